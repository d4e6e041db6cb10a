import { readFileSync } from "node:fs";
import { isAbsolute, relative, resolve } from "node:path";
import { ServeError } from "../error.ts";
import { resolveDeployment } from "../config/diff.ts";
import { LIMITS_DEFAULTS, parseImportPath, type ApplicationConfig, type DeploymentConfig, type ResolvedApplicationConfig } from "../config/schema.ts";
import { servable } from "../graph/application.ts";
import { graphPlanOf, type GraphPlan } from "./planner/graph-plan.ts";
import { planInSubprocess } from "./planner/planner.ts";

/**
 * An application ready for the controller, as plain data: its resolved
 * config, what its graph module said (per deployment) and where its code is.
 * It holds no node or function: the module was imported in a planning
 * process, never in the one that serves.
 */
export interface PlannedApp {
  config: ResolvedApplicationConfig;
  graph: GraphPlan;
  modulePath: string;
  exportName: string;
  /** The module file's content hash ("" when the node was handed over in-process). */
  fileHash: string;
  /** Changes when the code, the graph or its init args change: a rolling restart. */
  codeVersion: string;
}

/**
 * Plans the application from its graph module: imported fresh in a
 * short-lived planning process (`serve-bin plan`), so the module's top-level
 * work never blocks the proxy or the admin API, and a module that hangs,
 * crashes or exits takes only that process down. Options merge as defaults,
 * then the code's, then the config's. `baseDir` is where the config file
 * lives; `appDir` bounds where import paths may point; the import may take at
 * most `timeoutS` (limits.planTimeoutS).
 */
export async function planApp(app: ApplicationConfig, baseDir: string, appDir: string, timeoutS: number = LIMITS_DEFAULTS.planTimeoutS): Promise<PlannedApp> {
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
  const graph = await planInSubprocess({ modulePath, exportName: parts.exportName, fileHash }, timeoutS);
  return resolvePlan(graph, app, modulePath, parts.exportName, fileHash);
}

/** The same, for a node already in this process (serve.run with the user's own module loaded): same data, no import. */
export function planFromNode(node: unknown, app: ApplicationConfig, modulePath: string, exportName: string, fileHash = ""): PlannedApp {
  return resolvePlan(graphPlanOf(servable(node)), app, modulePath, exportName, fileHash);
}

/**
 * The plan again with another config entry (a PATCH), from the graph data
 * already planned: nothing is imported, so code edited on disk since is not
 * picked up.
 */
export function replan(plan: PlannedApp, app: ApplicationConfig): PlannedApp {
  return resolvePlan(plan.graph, app, plan.modulePath, plan.exportName, plan.fileHash);
}

/** Merges each deployment's options (defaults, code, config file) and checks the config against the graph. */
function resolvePlan(graph: GraphPlan, app: ApplicationConfig, modulePath: string, exportName: string, fileHash: string): PlannedApp {
  const byName = new Map(app.deployments.map((d) => [d.name, d]));
  const names = graph.deployments.map((d) => d.name);
  for (const name of byName.keys()) {
    if (!names.includes(name)) {
      throw new ServeError("invalid", `application ${app.name} configures deployment "${name}", which its graph does not have; it has ${names.join(", ")}`, {
        issues: [{ path: ["deployments", app.deployments.findIndex((d) => d.name === name), "name"], message: `no deployment "${name}" in the graph` }],
      });
    }
  }
  const deployments: DeploymentConfig[] = [];
  let routePrefix = app.routePrefix;
  for (const d of graph.deployments) {
    const ingress = d.name === graph.ingress;
    const { name: _n, ...fileOptions } = byName.get(d.name) ?? { name: d.name };
    const resolved = batchFloor(resolveDeployment(d.name, [d.options, fileOptions], { ingress }), d.batchFloor, fileOptions.maxOngoingRequests ?? d.options.maxOngoingRequests);
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
    // What runs inside the callers' processes is part of what they run: a change replaces them.
    codeVersion: `${graph.hash}.${fileHash}${here.length ? `.${Bun.hash(JSON.stringify(here)).toString(36)}` : ""}`,
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
function batchFloor(d: DeploymentConfig, floor: number, written: number | undefined): DeploymentConfig {
  if (d.maxOngoingRequests >= floor) return d;
  if (written !== undefined) {
    throw new ServeError("invalid", `${d.name} sets maxOngoingRequests ${written}, below its batched method's maxBatchSize ${floor}: a batch could never fill; set maxOngoingRequests to at least ${floor}`, {
      deployment: d.name,
      issues: [{ path: ["deployments", d.name, "maxOngoingRequests"], message: `below maxBatchSize ${floor}` }],
    });
  }
  return { ...d, maxOngoingRequests: floor };
}
