import { readFileSync } from "node:fs";
import { isAbsolute, relative, resolve } from "node:path";
import { ServeError } from "../error.ts";
import { resolveDeployment } from "../config/diff.ts";
import { parseImportPath, type ApplicationConfig, type DeploymentConfig, type ResolvedApplicationConfig } from "../config/schema.ts";
import { servable, type ServableGraph } from "../graph/application.ts";
import { maxBatchSizeOf } from "../api/batch.ts";
import { loadGraph } from "./load-graph.ts";

/** An application ready for the controller: its graph, its resolved config and where its code is. */
export interface PlannedApp {
  config: ResolvedApplicationConfig;
  graph: ServableGraph;
  modulePath: string;
  exportName: string;
  /** The module file's content hash ("" when the node was handed over in-process). */
  fileHash: string;
  /** The exported node the graph was built from: a PATCH re-plans from it without importing again. */
  node: unknown;
  /** Changes when the code, the graph or its init args change: a rolling restart. */
  codeVersion: string;
}

/**
 * Imports the application's graph module (fresh: a changed file is read
 * again) and merges options: defaults, then the code's, then the config's.
 * `baseDir` is where the config file lives; `appDir` bounds where import
 * paths may point.
 */
export async function planApp(app: ApplicationConfig, baseDir: string, appDir: string): Promise<PlannedApp> {
  const parts = parseImportPath(app.importPath);
  if (!parts) throw new ServeError("invalid", `importPath "${app.importPath}" is not "<file>.ts[:export]"`, { issues: [{ path: ["importPath"], message: "expected <file>.ts[:export]" }] });
  const modulePath = isAbsolute(parts.file) ? parts.file : resolve(baseDir, parts.file);
  const rel = relative(resolve(appDir), modulePath);
  if (rel.startsWith("..") || isAbsolute(rel)) {
    throw new ServeError("invalid", `importPath ${app.importPath} points outside the app directory ${appDir}; move the graph under it or start the server with --app-dir`, {
      issues: [{ path: ["importPath"], message: `outside --app-dir ${appDir}` }],
    });
  }
  let source: Buffer;
  try {
    source = readFileSync(modulePath);
  } catch {
    throw new ServeError("invalid", `importPath ${app.importPath}: no file at ${modulePath}`, { issues: [{ path: ["importPath"], message: `no file at ${modulePath}` }] });
  }
  const fileHash = Bun.hash(source).toString(36);
  // The hash in the URL makes a changed file import afresh instead of from the module cache.
  const { node } = await loadGraph(modulePath, parts.exportName, fileHash);
  return planFromNode(node, app, modulePath, parts.exportName, fileHash);
}

/** The same, for a node already in hand (serve.run, build). */
export function planFromNode(node: unknown, app: ApplicationConfig, modulePath: string, exportName: string, fileHash = ""): PlannedApp {
  const graph = servable(node);
  const byName = new Map(app.deployments.map((d) => [d.name, d]));
  for (const name of byName.keys()) {
    if (!graph.ir.deployments.has(name)) {
      throw new ServeError("invalid", `application ${app.name} configures deployment "${name}", which its graph does not have; it has ${[...graph.ir.deployments.keys()].join(", ")}`, {
        issues: [{ path: ["deployments", app.deployments.findIndex((d) => d.name === name), "name"], message: `no deployment "${name}" in the graph` }],
      });
    }
  }
  const deployments: DeploymentConfig[] = [];
  let routePrefix = app.routePrefix;
  for (const d of graph.ir.deployments.values()) {
    const ingress = d.name === graph.ingress;
    const { name: _n, ...fileOptions } = byName.get(d.name) ?? { name: d.name };
    const resolved = batchFloor(resolveDeployment(d.name, [d.def.options, fileOptions], { ingress }), d.def.target as Function, fileOptions.maxOngoingRequests ?? d.def.options.maxOngoingRequests);
    if (ingress) routePrefix ??= resolved.routePrefix;
    deployments.push(colocated(resolved, ingress, app));
  }
  const here = colocatedOf(deployments);
  return {
    config: { name: app.name, importPath: app.importPath, routePrefix: routePrefix ?? "/", deployments },
    graph,
    modulePath,
    exportName,
    fileHash,
    node,
    // What runs inside the callers' processes is part of what they run: a change replaces them.
    codeVersion: `${graph.ir.hash}.${fileHash}${here.length ? `.${Bun.hash(JSON.stringify(here)).toString(36)}` : ""}`,
  };
}

/** What a caller's process needs to run a colocated deployment itself. */
export interface ColocatedDeployment {
  name: string;
  userConfig?: unknown;
}

/** The application's colocated deployments (empty when none), for the replica spec. */
export function colocatedOf(deployments: readonly DeploymentConfig[]): ColocatedDeployment[] {
  return deployments.filter((d) => d.colocate).map((d) => (d.userConfig === undefined ? { name: d.name } : { name: d.name, userConfig: d.userConfig }));
}

/**
 * A colocated deployment runs in its callers' processes (the controller
 * starts no replica of it); the ingress is called by the proxy and cannot be one.
 */
function colocated(d: DeploymentConfig, ingress: boolean, app: ApplicationConfig): DeploymentConfig {
  if (!d.colocate) return d;
  if (ingress) {
    throw new ServeError("invalid", `application ${app.name}: ${d.name} is the ingress, which the HTTP proxy calls, so it cannot be colocated; remove colocate from ${d.name} (set it on the deployments the ingress calls)`, {
      deployment: d.name,
      issues: [{ path: ["deployments", d.name, "colocate"], message: "the ingress cannot be colocated" }],
    });
  }
  return d;
}

/**
 * A replica admits at most maxOngoingRequests calls, so a batched method could
 * never gather more: the default is raised to the largest maxBatchSize, and a
 * value written lower is refused.
 */
function batchFloor(d: DeploymentConfig, target: Function, written: number | undefined): DeploymentConfig {
  const floor = maxBatchSizeOf(target);
  if (d.maxOngoingRequests >= floor) return d;
  if (written !== undefined) {
    throw new ServeError("invalid", `${d.name} sets maxOngoingRequests ${written}, below its batched method's maxBatchSize ${floor}: a batch could never fill; set maxOngoingRequests to at least ${floor}`, {
      deployment: d.name,
      issues: [{ path: ["deployments", d.name, "maxOngoingRequests"], message: `below maxBatchSize ${floor}` }],
    });
  }
  return { ...d, maxOngoingRequests: floor };
}
