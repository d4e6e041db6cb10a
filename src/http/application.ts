/**
 * `serve.build`: a node (or an Application) as the config of SPEC section 3,
 * without starting anything. Nothing here starts a server, so importing
 * "serve-bin" in a replica stays light.
 */
import { basename, dirname, relative, resolve } from "node:path";
import { ServeError } from "../error.ts";
import { isNode, type DAGNode } from "../api/nodes.ts";
import { resolveDeployment } from "../config/diff.ts";
import { parseConfig, type DeploymentOptions, type ResolvedApplicationConfig, type ServeConfig } from "../config/schema.ts";
import { planFromNode } from "../runtime/plan-app.ts";
import type { AppliedConfig } from "./server.ts";

/**
 * The YAML writer, loaded on first use: this module is part of the public API every replica and
 * planning process loads, and the yaml package costs ~20 ms of CPU to evaluate there for nothing.
 */
function configToYAML(config: ServeConfig): string {
  return (require("../config/yaml.ts") as typeof import("../config/yaml.ts")).toYAML(config);
}

export interface RunOptions {
  port?: number;
  host?: string;
  /** Application name (default "default"). */
  name?: string;
  routePrefix?: string;
}

/**
 * A built application: the config of SPEC section 3 (`app.config`), each
 * deployment reachable by name to change its options before running it.
 * @example
 * const app = serve.build(graph);
 * app.deployments.Model.setOptions({ numReplicas: 3 });
 * await serve.run(app);
 */
export class Application {
  /** Changes the options of one deployment in `config`. */
  readonly deployments: Record<string, { setOptions(o: DeploymentOptions): void }>;
  readonly ingress: { setOptions(o: DeploymentOptions): void };

  constructor(
    readonly config: AppliedConfig,
    readonly baseDir: string,
    ingressName: string,
  ) {
    const app = config.applications[0]!;
    const setter = (name: string) => ({
      setOptions: (o: DeploymentOptions) => {
        const i = app.deployments.findIndex((d) => d.name === name);
        const { name: _n, ...current } = app.deployments[i]!;
        app.deployments[i] = resolveDeployment(name, [current as DeploymentOptions, o], { ingress: name === ingressName });
      },
    });
    this.deployments = Object.fromEntries(app.deployments.map((d) => [d.name, setter(d.name)]));
    this.ingress = setter(ingressName);
  }

  toYAML(): string {
    return configToYAML(this.config as unknown as ServeConfig);
  }
}

export function exportNameOf(node: DAGNode, mod: Record<string, unknown>): string | undefined {
  return Object.keys(mod).find((k) => mod[k] === node);
}

export function needNode(node: unknown, what: string): DAGNode {
  if (!isNode(node)) throw new ServeError("build", `${what} takes a bound graph node (the result of .bind()) or an Application from serve.build()`);
  if (!node.sourceFile) throw new ServeError("build", `${what}: cannot tell which module bound this node; bind it in a .ts or .js file`);
  return node;
}

function defaultConfig(opts: RunOptions): ServeConfig {
  const parsed = parseConfig({ proxy: { host: opts.host ?? "127.0.0.1", port: opts.port ?? 8000 } });
  if (!parsed.ok) throw new ServeError("invalid", parsed.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; "), { issues: parsed.issues });
  return parsed.value;
}

/**
 * Builds the config for a node without starting anything. Replicas import the
 * node's module by its export, so the node must be exported.
 */
export function build(node: unknown, opts: RunOptions & { exportName?: string } = {}): Application {
  const n = needNode(node, "serve.build");
  const file = n.sourceFile!;
  let exportName = opts.exportName;
  if (!exportName) {
    try {
      exportName = exportNameOf(n, require(file) as Record<string, unknown>);
    } catch {}
  }
  if (!exportName) throw new ServeError("build", `serve.build: the node is not exported from ${file}; export it, or pass { exportName }`);
  return buildFrom(n, file, exportName, opts);
}

export function buildFrom(node: DAGNode, file: string, exportName: string, opts: RunOptions): Application {
  const importPath = `./${basename(file)}${exportName === "default" ? "" : `:${exportName}`}`;
  const planned = planFromNode(node, { name: opts.name ?? "default", importPath, routePrefix: opts.routePrefix, deployments: [] }, file, exportName);
  const config: AppliedConfig = { ...defaultConfig(opts), applications: [planned.config as ResolvedApplicationConfig] };
  return new Application(config, dirname(file), planned.graph.ingress);
}

/**
 * The ingress's methods as serve.run's handle sees them when no class is
 * named: a DAGDriver's `predict`, or any method of an ingress class
 * (`serve.run<MyIngress>(node)` types them exactly).
 */
export type IngressMethods = { predict(input: unknown): unknown } & Record<string, (...args: any[]) => unknown>;

/** The config as YAML (the `serve-bin build` output). */
export function toYAML(config: AppliedConfig | ServeConfig): string {
  return configToYAML(config as ServeConfig);
}

export function relativeImport(fromDir: string, file: string): string {
  const rel = relative(resolve(fromDir), file);
  return rel.startsWith(".") ? rel : `./${rel}`;
}
