/**
 * The change classifier: what each config change costs (update the target,
 * reconfigure in place, or restart), and the merges a PATCH and a config file
 * apply over what is running or what the code says.
 */
import { ServeError } from "../error.ts";
import {
  DEFAULTS,
  INGRESS_DEFAULTS,
  keyOrder,
  deploymentConfigSchema,
  formatIssues,
  ONE_OFF,
  toIssues,
  type DeploymentConfig,
  type DeploymentOptions,
  type DeploymentPatch,
  type RouteConfig,
  type ServeConfig,
} from "./schema.ts";

export type ChangeCost = "target" | "reconfigure" | "restart";

/** Sections fixed for the server's life: a change is kept for its next start and reported as needing a restart. */
export const SERVER_SECTIONS = ["proxy", "admin", "sharedMemory", "logging", "tracing"] as const;

type DeploymentField = Exclude<keyof DeploymentConfig, "name">;

/**
 * What changing each deployment field costs. `target`: the controller starts or
 * stops replicas or sends new limits; `reconfigure`: `reconfigure(userConfig)`
 * runs in place; `restart`: a rolling replace of the replicas.
 *
 * @example FIELD_COST.userConfig // "reconfigure"
 */
export const FIELD_COST: Readonly<Record<DeploymentField, ChangeCost>> = Object.freeze({
  numReplicas: "target",
  maxOngoingRequests: "target",
  maxQueuedRequests: "target",
  autoscalingConfig: "target",
  healthCheckPeriodS: "target",
  healthCheckTimeoutS: "target",
  gracefulShutdownTimeoutS: "target",
  // Callers read it from the next routing snapshot.
  outlierDetection: "target",
  // The proxy's route table changes; no replica does.
  routePrefix: "target",
  userConfig: "reconfigure",
  // A process's environment is fixed when it is spawned.
  env: "restart",
  // Where the deployment runs: in its callers' processes, which are replaced.
  colocate: "restart",
  // Read by the built manifests only; no process on this machine changes.
  resources: "target",
});

/** Application-level fields: a new importPath is new code, so every replica is replaced. */
export const APPLICATION_FIELD_COST = Object.freeze({ importPath: "restart", routePrefix: "target" } as const);

export interface DeploymentDiff {
  name: string;
  costs: Set<ChangeCost>;
  /** Changed fields, in key order. */
  fields: string[];
}

export interface ApplicationDiff {
  name: string;
  /** importPath changed: every replica of the application is replaced, listed deployments or not. */
  restart: boolean;
  /** The proxy's route table must change. */
  routePrefixChanged: boolean;
  addedDeployments: string[];
  removedDeployments: string[];
  changedDeployments: DeploymentDiff[];
}

export interface ConfigDiff {
  addedApplications: string[];
  removedApplications: string[];
  /** Only applications with some change; an unchanged one appears nowhere. */
  changedApplications: ApplicationDiff[];
  /** Changed server fields ("proxy.port", "sharedMemory.arenaBytes"…): applied at the next server start. */
  serverRestartNeeded: string[];
  /** The `routes` section (traffic splits) changed. */
  routesChanged: boolean;
}

/**
 * Classifies the change from `old` (null: nothing running) to `next`. Works on
 * config files and on resolved configs alike; deploying the same config twice
 * gives an empty diff.
 *
 * @example
 * const d = diffConfigs(running, next);
 * d.changedApplications[0].changedDeployments[0] // { name: "Model", costs: Set {"reconfigure"}, fields: ["userConfig"] }
 */
export function diffConfigs(old: ServeConfig | null, next: ServeConfig): ConfigDiff {
  const oldApps = new Map((old?.applications ?? []).map((a) => [a.name, a]));
  const nextApps = new Map(next.applications.map((a) => [a.name, a]));
  const changedApplications: ApplicationDiff[] = [];
  for (const [name, app] of nextApps) {
    const before = oldApps.get(name);
    if (!before) continue;
    const beforeDeps = new Map(before.deployments.map((d) => [d.name, d]));
    const nextDeps = new Map(app.deployments.map((d) => [d.name, d]));
    const changedDeployments: DeploymentDiff[] = [];
    for (const [depName, dep] of nextDeps) {
      const prev = beforeDeps.get(depName);
      if (!prev) continue;
      const fields = changedKeys(prev, dep)
        .filter((k) => k !== "name")
        .sort((x, y) => rank(x) - rank(y));
      if (fields.length) {
        // An unknown field can only come from a newer writer; restarting is the safe guess.
        const costs = new Set(fields.map((f) => FIELD_COST[f as DeploymentField] ?? "restart"));
        changedDeployments.push({ name: depName, costs, fields });
      }
    }
    const diff: ApplicationDiff = {
      name,
      restart: before.importPath !== app.importPath,
      routePrefixChanged: before.routePrefix !== app.routePrefix,
      addedDeployments: [...nextDeps.keys()].filter((d) => !beforeDeps.has(d)),
      removedDeployments: [...beforeDeps.keys()].filter((d) => !nextDeps.has(d)),
      changedDeployments,
    };
    const changed =
      diff.restart || diff.routePrefixChanged || diff.addedDeployments.length || diff.removedDeployments.length || changedDeployments.length;
    if (changed) changedApplications.push(diff);
  }
  const serverRestartNeeded = old
    ? SERVER_SECTIONS.flatMap((s) => changedKeys(old[s], next[s]).map((k) => `${s}.${k}`))
    : [];
  return {
    addedApplications: [...nextApps.keys()].filter((a) => !oldApps.has(a)),
    removedApplications: [...oldApps.keys()].filter((a) => !nextApps.has(a)),
    changedApplications,
    serverRestartNeeded,
    routesChanged: !deepEqual(old?.routes ?? [], next.routes ?? []),
  };
}

const rank = (field: string) => {
  const i = keyOrder().deployment.indexOf(field);
  return i < 0 ? keyOrder().deployment.length : i;
};

/** True when applying the diff would change nothing. */
export function isEmptyDiff(d: ConfigDiff): boolean {
  return (
    !d.addedApplications.length &&
    !d.removedApplications.length &&
    !d.changedApplications.length &&
    !d.serverRestartNeeded.length &&
    !d.routesChanged
  );
}

/** Keys whose values differ; a key set to undefined counts as absent. */
function changedKeys(a: object, b: object): string[] {
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  const keys = [...new Set([...Object.keys(ra), ...Object.keys(rb)])];
  return keys.filter((k) => !deepEqual(ra[k], rb[k]));
}

/** Structural equality of JSON-like values; object key order does not matter. */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((v, i) => deepEqual(v, b[i]));
  const ra = a as Record<string, unknown>;
  const rb = b as Record<string, unknown>;
  const ka = Object.keys(ra).filter((k) => ra[k] !== undefined);
  const kb = Object.keys(rb).filter((k) => rb[k] !== undefined);
  return ka.length === kb.length && ka.every((k) => deepEqual(ra[k], rb[k]));
}

/**
 * One layer of options over another: `userConfig`, `autoscalingConfig` and `outlierDetection` are
 * replaced whole (a null autoscalingConfig removes it), `env` merges by
 * variable, any other field given replaces the old value.
 */
function layer(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined || k === "name") continue;
    if (k === "autoscalingConfig" && v === null) delete out[k];
    else if (k === "env") out[k] = { ...(base.env as object | undefined), ...(v as object) };
    else out[k] = v;
  }
  return out;
}

function resolved(name: string, merged: Record<string, unknown>, what: string): DeploymentConfig {
  const r = deploymentConfigSchema().safeParse({ ...merged, name }, ONE_OFF);
  if (r.success) return r.data;
  const issues = toIssues(r.error);
  throw new ServeError("invalid", `${what} leaves deployment "${name}" invalid:\n${formatIssues(issues)}`, { deployment: name, issues });
}

/**
 * Applies a PATCH to a running deployment. Throws a ServeError "invalid" (422)
 * when the result is invalid, e.g. numReplicas "auto" with no autoscalingConfig.
 *
 * @example mergeDeploymentPatch(current, { numReplicas: 3 }) // current with 3 replicas
 */
export function mergeDeploymentPatch(current: DeploymentConfig, patch: DeploymentPatch): DeploymentConfig {
  return resolved(current.name, layer({ ...current }, { ...patch }), "this change");
}

/**
 * A deployment's effective options: the defaults (the ingress's for a
 * DAGDriver), then each layer in order — typically the code's options, then the
 * config file's entry. Throws a ServeError "invalid" naming the problems.
 *
 * @example resolveDeployment("Model", [codeOptions, fileEntry]) // DeploymentConfig
 */
export function resolveDeployment(
  name: string,
  layers: readonly (DeploymentOptions | undefined)[],
  opts: { ingress?: boolean } = {},
): DeploymentConfig {
  let merged: Record<string, unknown> = { ...DEFAULTS, ...(opts.ingress ? INGRESS_DEFAULTS : {}) };
  for (const l of layers) if (l) merged = layer(merged, { ...l });
  return resolved(name, merged, "the options");
}

/**
 * The config with one route entry replaced (same routePrefix) or added; for
 * `PATCH /api/routes`. Validate the result with `parseConfig`.
 */
export function mergeRoutePatch<C extends ServeConfig>(config: C, route: RouteConfig): C {
  const i = config.routes.findIndex((r) => r.routePrefix === route.routePrefix);
  const routes = i < 0 ? [...config.routes, route] : config.routes.map((r, j) => (j === i ? route : r));
  return { ...config, routes };
}
