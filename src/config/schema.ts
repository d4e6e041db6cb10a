/**
 * The config file's zod schema (SPEC section 3). Every field is described:
 * the docs and `serve-bin schema` are generated from these descriptions.
 *
 * Deployment entries in a file are partial on purpose: a field left out takes
 * the value set in code, then the default (`resolveDeployment` in diff.ts), as
 * in Ray Serve; and only the code knows which deployment is the ingress, whose
 * default differs. So parsing a file fills the defaults of the server sections
 * (`proxy`, `admin`, `sharedMemory`) and of `autoscalingConfig` only.
 */
import { z } from "zod";
import type { Issue } from "../error.ts";
import type { ServeEnv } from "./env.ts";

/** Defaults of the deployment options. A `DAGDriver` uses `INGRESS_DEFAULTS` on top. */
export const DEFAULTS = Object.freeze({
  numReplicas: 1,
  maxOngoingRequests: 5,
  maxQueuedRequests: -1,
  healthCheckPeriodS: 10,
  healthCheckTimeoutS: 30,
  gracefulShutdownTimeoutS: 20,
});

/** The ingress fans every request out, so it admits more at once than a model. */
export const INGRESS_DEFAULTS = Object.freeze({ maxOngoingRequests: 100 });

/** Outlier detection, as Envoy's: a caller stops sending to a replica that keeps failing, for a while. */
export const OUTLIER_DEFAULTS = Object.freeze({
  consecutiveFailures: 5,
  baseEjectionS: 30,
  maxEjectionS: 300,
  maxEjectionPercent: 10,
});

/** Defaults of `@batch(...)`. */
export const BATCH_DEFAULTS = Object.freeze({ maxBatchSize: 10, batchWaitTimeoutS: 0.01 });

export const AUTOSCALING_DEFAULTS = Object.freeze({
  minReplicas: 1,
  /** Used when it is at least minReplicas; otherwise maxReplicas defaults to minReplicas. */
  maxReplicas: 10,
  targetOngoingRequests: 2,
  upscaleDelayS: 3,
  downscaleDelayS: 60,
});

/**
 * A value built on its first use and kept. Every schema here is built this
 * way: building them all took 15-20 ms of CPU at import (zod's builders are
 * not free), paid by every process, while a replica or the planner needs at
 * most the deployment options' schema (user code's `.options()`), and most
 * commands none.
 */
function once<T>(build: () => T): () => T {
  let value: T | undefined;
  let built = false;
  return () => {
    if (!built) {
      value = build();
      built = true;
    }
    return value as T;
  };
}

// ---- field builders: each message says what a valid value looks like ----

const wholeNumber = (min: number, max = Number.MAX_SAFE_INTEGER, hint = "") => {
  const error = `expected a whole number ${max < Number.MAX_SAFE_INTEGER ? `from ${min} to ${max}` : `≥ ${min}`}${hint}`;
  return z.int({ error }).min(min, { error }).max(max, { error });
};
/**
 * The longest duration any field accepts: timers count in 32-bit milliseconds,
 * and a longer wait (2^31 ms, about 24.8 days) wraps and fires at once.
 */
export const MAX_SECONDS = 2_147_483;
const seconds = (allowZero: boolean) => {
  const error = `expected a number of seconds ${allowZero ? "≥ 0" : "> 0"} and at most ${MAX_SECONDS} (about 24.8 days, the longest a timer can wait), e.g. 0.5`;
  const n = z.number({ error }).max(MAX_SECONDS, { error });
  return allowZero ? n.min(0, { error }) : n.positive({ error });
};
const port = () => wholeNumber(0, 65535, " (0 picks a free port)");
const host = () => z.string({ error: 'expected a host name or address, e.g. "127.0.0.1"' }).min(1, { error: "the host must not be empty" });

const NAME = /^[^\s/]+$/;
const name = (what: string) =>
  z
    .string({ error: `expected ${what} name (a string)` })
    .regex(NAME, { error: `${what} name must be non-empty, without spaces or "/"` });

const ROUTE_PREFIX = /^\/([^/?#\s]+(\/[^/?#\s]+)*)?$/;
const routePrefix = () =>
  z
    .string({ error: 'expected a path like "/my-dag"' })
    .regex(ROUTE_PREFIX, { error: 'expected a path like "/my-dag": it starts with "/", has no trailing "/", and no spaces, "?" or "#"' })
    .refine((p) => p !== "/-" && !p.startsWith("/-/"), {
      error: '"/-/" is reserved for serve-bin\'s own endpoints (/-/healthz, /-/routes); choose another prefix',
    });

// Plain groups, not named ones: the pattern is copied into the JSON Schema, read by other regex engines.
const IMPORT_PATH = /^([^:]+\.(?:ts|tsx|mts|cts|js|jsx|mjs|cjs))(?::([A-Za-z_$][\w$]*))?$/;
const importPath = () =>
  z
    .string({ error: 'expected "<file>[:export]", e.g. "./graph.ts:default"' })
    .regex(IMPORT_PATH, { error: 'expected "<file>.ts" or "<file>.js", optionally with ":<export>", e.g. "./graph.ts:default"' });

/**
 * Splits an importPath into the module file and the export (default `default`).
 *
 * @example parseImportPath("./graph.ts:app") // { file: "./graph.ts", exportName: "app" }
 */
export function parseImportPath(path: string): { file: string; exportName: string } | null {
  const m = IMPORT_PATH.exec(path);
  if (!m) return null;
  return { file: m[1]!, exportName: m[2] ?? "default" };
}

/** How deep a userConfig may nest: the wire codec that hands it to replicas carries 500 levels, with room for its envelope. */
const MAX_USER_CONFIG_DEPTH = 200;

/**
 * JSON-like: what YAML and JSON can write and every replica can be handed.
 * A "__proto__" key (JSON.parse makes it an own key) would set a receiver's
 * prototype, so the codec refuses it; so does this, before anything changes.
 */
function isJsonLike(v: unknown, depth = 0): boolean {
  if (v === null || typeof v === "string" || typeof v === "boolean") return true;
  if (typeof v === "number") return Number.isFinite(v);
  if (depth >= MAX_USER_CONFIG_DEPTH) return false;
  if (Array.isArray(v)) return v.every((x) => isJsonLike(x, depth + 1));
  if (typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype) {
    return !Object.hasOwn(v, "__proto__") && Object.values(v).every((x) => isJsonLike(x, depth + 1));
  }
  return false;
}

// ---- strict objects: an unknown key is an error that names the closest known key ----

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = row[j]!;
      row[j] = Math.min(up + 1, row[j - 1]! + 1, diag + (a[i - 1]!.toLowerCase() === b[j - 1]!.toLowerCase() ? 0 : 1));
      diag = up;
    }
  }
  return row[b.length]!;
}

function closest(key: string, known: readonly string[]): string | undefined {
  // A shortened name ("replicas" for "numReplicas") is a likelier slip than a typo.
  const lower = key.toLowerCase();
  const containing = known.filter((k) => lower.length >= 4 && k.toLowerCase().includes(lower));
  if (containing.length === 1) return containing[0];
  let best: string | undefined;
  let bestScore = Math.max(2, Math.floor(key.length / 3)) + 1;
  for (const k of known) {
    const d = editDistance(key, k);
    if (d < bestScore) [best, bestScore] = [k, d];
  }
  return best;
}

function unknownKeysMessage(keys: readonly string[], known: readonly string[], what: string): string {
  return keys
    .map((k) => {
      const near = closest(k, known);
      return `unknown key "${k}" in ${what}: ${near ? `did you mean "${near}"?` : `expected one of ${known.join(", ")}`}`;
    })
    .join("; ");
}

function strict<S extends z.ZodRawShape>(what: string, shape: S) {
  const known = Object.keys(shape);
  return z.strictObject(shape, {
    error: (iss) => {
      if (iss.code === "unrecognized_keys") return unknownKeysMessage(iss.keys, known, what);
      if (iss.code === "invalid_type") return `expected ${what} as a mapping (key: value)`;
      return undefined;
    },
  });
}

// ---- deployment ----

const autoscalingShape = once(() => ({
  minReplicas: wholeNumber(0).default(AUTOSCALING_DEFAULTS.minReplicas).describe("Fewest replicas the autoscaler keeps. Default 1."),
  maxReplicas: wholeNumber(1)
    .optional()
    .describe("Most replicas the autoscaler starts; at least minReplicas. Default 10, or minReplicas if that is larger."),
  targetOngoingRequests: z
    .number({ error: "expected a number > 0" })
    .positive({ error: "expected a number > 0" })
    .default(AUTOSCALING_DEFAULTS.targetOngoingRequests)
    .describe("Requests in flight per replica the autoscaler aims for. Default 2."),
  upscaleDelayS: seconds(true)
    .default(AUTOSCALING_DEFAULTS.upscaleDelayS)
    .describe("Seconds the load must stay above target before replicas are added. Default 3."),
  downscaleDelayS: seconds(true)
    .default(AUTOSCALING_DEFAULTS.downscaleDelayS)
    .describe("Seconds the load must stay below target before replicas are removed. Default 60."),
}));

export const autoscalingConfigSchema = once(() =>
  strict("autoscalingConfig", autoscalingShape())
    .superRefine((a, ctx) => {
      if (a.maxReplicas !== undefined && a.maxReplicas < a.minReplicas) {
        ctx.addIssue({
          code: "custom",
          path: ["maxReplicas"],
          message: `maxReplicas (${a.maxReplicas}) is below minReplicas (${a.minReplicas}): raise maxReplicas or lower minReplicas`,
        });
      }
    })
    .transform((a) => ({
      minReplicas: a.minReplicas,
      maxReplicas: a.maxReplicas ?? Math.max(a.minReplicas, AUTOSCALING_DEFAULTS.maxReplicas),
      targetOngoingRequests: a.targetOngoingRequests,
      upscaleDelayS: a.upscaleDelayS,
      downscaleDelayS: a.downscaleDelayS,
    }))
    .describe('Autoscaling, used when numReplicas is "auto": the replica count follows the requests in flight.'),
);

const outlierShape = once(() => ({
  consecutiveFailures: wholeNumber(0, 1000, " (0 turns ejection off)")
    .default(OUTLIER_DEFAULTS.consecutiveFailures)
    .describe("Timeouts or 503s in a row, as one caller sees them, after which that caller ejects the replica. 0 = never eject. Default 5."),
  baseEjectionS: seconds(false)
    .default(OUTLIER_DEFAULTS.baseEjectionS)
    .describe("Seconds a replica stays ejected the first time; each ejection in a row multiplies it (2×, 3×…). Default 30."),
  maxEjectionS: seconds(false).default(OUTLIER_DEFAULTS.maxEjectionS).describe("The longest one ejection lasts, in seconds. Default 300."),
  maxEjectionPercent: wholeNumber(0, 100)
    .default(OUTLIER_DEFAULTS.maxEjectionPercent)
    .describe("Most replicas (percent, rounded down, but at least one) a caller ejects at once; one replica always stays. Default 10."),
}));

export const outlierDetectionSchema = once(() =>
  strict("outlierDetection", outlierShape())
    .superRefine((o, ctx) => {
      if (o.maxEjectionS < o.baseEjectionS) {
        ctx.addIssue({
          code: "custom",
          path: ["maxEjectionS"],
          message: `maxEjectionS (${o.maxEjectionS}) is below baseEjectionS (${o.baseEjectionS}): raise maxEjectionS or lower baseEjectionS`,
        });
      }
    })
    .describe("Outlier detection, as Envoy's: each caller ejects a replica that keeps timing out or answering 503 for a while."),
);

/** Most GPUs one replica may ask for (a node with more is rare; a typo like 80 is refused, not left Pending forever). */
export const MAX_GPUS_PER_REPLICA = 16;

/** A Kubernetes CPU quantity: cores as a number (0.5) or a string ("2", "1.5", "500m"), above 0 and at most 1024 cores. */
const CPU_MESSAGE = 'cpu is cores: a number above 0 and at most 1024 (e.g. 0.5), or a string like "2" or "500m"';
function cpuCores(v: number | string): number {
  if (typeof v === "number") return v;
  const m = /^(\d+(?:\.\d+)?)(m?)$/.exec(v);
  return m ? Number(m[1]) / (m[2] ? 1000 : 1) : Number.NaN;
}
const cpuQuantity = once(() =>
  z
    .union([z.number(), z.string()], { error: CPU_MESSAGE })
    .refine((v) => cpuCores(v) > 0 && cpuCores(v) <= 1024, { error: CPU_MESSAGE })
    .transform(String),
);

/** A Kubernetes memory quantity: bytes with a binary or decimal suffix. */
const memoryQuantity = once(() =>
  z
    .string({ error: 'memory is a string with a unit, e.g. "512Mi" or "4Gi"' })
    .regex(/^[1-9]\d*(\.\d+)?(Ki|Mi|Gi|Ti|k|M|G|T)$/, { error: 'memory is a size with a unit: Ki, Mi, Gi, Ti (or k, M, G, T), e.g. "512Mi" or "4Gi"' }),
);

const resourcesShape = once(() => ({
  cpu: cpuQuantity().optional().describe('CPU cores each replica asks for and is limited to, e.g. 0.5 or "500m".'),
  memory: memoryQuantity().optional().describe('Memory each replica asks for and is limited to, e.g. "512Mi".'),
  gpu: wholeNumber(0, MAX_GPUS_PER_REPLICA)
    .optional()
    .describe(`NVIDIA GPUs each replica gets (the nvidia.com/gpu resource; at most ${MAX_GPUS_PER_REPLICA}).`),
}));

const field = {
  name: () => name("a deployment"),
  resources: () => strict("resources", resourcesShape()),
  numReplicas: () =>
    z.union([wholeNumber(0, undefined, ', or "auto" with an autoscalingConfig'), z.literal("auto")], {
      error: 'expected a whole number ≥ 0, or "auto" with an autoscalingConfig',
    }),
  maxOngoingRequests: () => wholeNumber(1),
  maxQueuedRequests: () => wholeNumber(-1, undefined, " (-1 for no limit)"),
  userConfig: () =>
    z.unknown().refine(isJsonLike, {
      error: `userConfig must be JSON-like: mappings, lists, strings, finite numbers, booleans and null, nested at most ${MAX_USER_CONFIG_DEPTH} levels, with no key named "__proto__"`,
    }),
  autoscalingConfig: () => autoscalingConfigSchema(),
  healthCheckPeriodS: () => seconds(false),
  healthCheckTimeoutS: () => seconds(false),
  gracefulShutdownTimeoutS: () => seconds(true),
  outlierDetection: () => outlierDetectionSchema(),
  env: () =>
    z.record(
      z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/),
      // Numbers and booleans are accepted and written as strings: `OMP_NUM_THREADS: 1` is what people type.
      z
        .union([z.string(), z.number(), z.boolean()], { error: 'expected a string value, e.g. OMP_NUM_THREADS: "1"' })
        .transform(String)
        .describe("The variable's value."),
      {
        error: (iss) =>
          iss.code === "invalid_key"
            ? "an environment variable name is letters, digits and _, and does not start with a digit"
            : iss.code === "invalid_type"
              ? 'expected a mapping of variable names to values, e.g. { OMP_NUM_THREADS: "1" }'
              : undefined,
      },
    ),
  routePrefix: () => routePrefix(),
  colocate: () => z.boolean({ error: "colocate is true or false" }),
};

/** Descriptions shared by every variant of the deployment schema. */
const about = {
  name: "The deployment's name: its function's or class's name, or options.name; Model, Model_1… when one deployment is bound with different init args.",
  numReplicas: 'Replica processes to run, or "auto" to follow the load within autoscalingConfig. Default 1.',
  maxOngoingRequests:
    "Requests one replica runs at once; more wait in the callers' queues. Default 5 (100 for a DAGDriver); never below a batched method's maxBatchSize.",
  maxQueuedRequests: "Requests a caller queues for this deployment when every replica is full; beyond it: HTTP 503 at once. -1 = unbounded. Default -1.",
  userConfig:
    "Any JSON-like value handed to the class's reconfigure(userConfig) at start and on every change, in place, without a restart.",
  autoscalingConfig: 'Autoscaling bounds and pace, used when numReplicas is "auto". Replaced whole by a PATCH.',
  healthCheckPeriodS: "Seconds between two checkHealth() calls on each replica. Default 10.",
  healthCheckTimeoutS: "Seconds a checkHealth() call may take before the replica counts as unhealthy. Default 30.",
  gracefulShutdownTimeoutS: "Seconds a stopping replica may spend finishing its requests in flight before it is killed. Default 20.",
  outlierDetection:
    "When a caller stops sending to a replica that keeps failing: after consecutiveFailures timeouts or 503s in a row it is ejected for baseEjectionS (longer each time in a row, at most maxEjectionS), never more than maxEjectionPercent of the replicas. Replaced whole by a PATCH.",
  env: 'Extra environment variables for the replica processes, e.g. { OMP_NUM_THREADS: "1" }. A change restarts the replicas.',
  routePrefix: 'The HTTP path the ingress serves, e.g. "/my-dag" (ingress only; "/-/" is reserved).',
  resources:
    'What each replica asks of a cluster node, e.g. { cpu: "500m", memory: "512Mi", gpu: 1 }: on Kubernetes the container\'s requests and limits (gpu as nvidia.com/gpu), on Swarm deploy.resources. Written into the manifests only when stated; `serve-bin run` on one machine does not enforce them. Fixed at build time: rebuild the manifests to change them.',
  colocate:
    "true: run this deployment inside each process that calls it, instead of in replicas of its own: a call is a function call (arguments and results still pass through the wire codec, so answers are the same), with no hop and no wake-up of another process. For cheap pre- and post-processing. Not for the ingress; numReplicas, autoscaling, maxOngoingRequests, health checks and env do not apply (each caller's process runs it, as often as its callers call); a change of userConfig or colocate replaces the application's replicas. Default false.",
} as const;

const optionalDeploymentShape = once(() => ({
  name: field.name().optional().describe(about.name),
  numReplicas: field.numReplicas().optional().describe(about.numReplicas),
  maxOngoingRequests: field.maxOngoingRequests().optional().describe(about.maxOngoingRequests),
  maxQueuedRequests: field.maxQueuedRequests().optional().describe(about.maxQueuedRequests),
  userConfig: field.userConfig().optional().describe(about.userConfig),
  autoscalingConfig: field.autoscalingConfig().optional().describe(about.autoscalingConfig),
  healthCheckPeriodS: field.healthCheckPeriodS().optional().describe(about.healthCheckPeriodS),
  healthCheckTimeoutS: field.healthCheckTimeoutS().optional().describe(about.healthCheckTimeoutS),
  gracefulShutdownTimeoutS: field.gracefulShutdownTimeoutS().optional().describe(about.gracefulShutdownTimeoutS),
  outlierDetection: field.outlierDetection().optional().describe(about.outlierDetection),
  env: field.env().optional().describe(about.env),
  routePrefix: field.routePrefix().optional().describe(about.routePrefix),
  colocate: field.colocate().optional().describe(about.colocate),
  resources: field.resources().optional().describe(about.resources),
}));

/** A check every complete deployment passes: "auto" needs bounds to scale within. */
function autoNeedsBounds(d: { numReplicas?: number | "auto"; autoscalingConfig?: unknown }, ctx: z.RefinementCtx): void {
  if (d.numReplicas === "auto" && d.autoscalingConfig == null) {
    ctx.addIssue({
      code: "custom",
      path: ["numReplicas"],
      message: 'numReplicas "auto" needs an autoscalingConfig: add autoscalingConfig: { minReplicas: 1, maxReplicas: 8 }, or set a number',
    });
  }
}

/**
 * The options of `deployment(fn, options)` and `Deployment.options(...)`: every field optional.
 *
 * @example deploymentOptionsSchema().parse({ numReplicas: 2, userConfig: { weights: "./w.json" } })
 */
export const deploymentOptionsSchema = once(() =>
  strict("deployment options", optionalDeploymentShape())
    .superRefine(autoNeedsBounds)
    .describe("Options of one deployment."),
);

/** A deployment entry of a config file: its name, and the options that override the code's. */
export const deploymentSpecSchema = once(() =>
  strict("a deployment", { ...optionalDeploymentShape(), name: field.name().describe(about.name) })
    .superRefine(autoNeedsBounds)
    .describe("One deployment of the application, by name. Options left out take the value set in code, then the default."),
);

const deploymentConfigShape = once(() => ({
  name: field.name().describe(about.name),
  numReplicas: field.numReplicas().default(DEFAULTS.numReplicas).describe(about.numReplicas),
  maxOngoingRequests: field.maxOngoingRequests().default(DEFAULTS.maxOngoingRequests).describe(about.maxOngoingRequests),
  maxQueuedRequests: field.maxQueuedRequests().default(DEFAULTS.maxQueuedRequests).describe(about.maxQueuedRequests),
  userConfig: optionalDeploymentShape().userConfig,
  autoscalingConfig: optionalDeploymentShape().autoscalingConfig,
  healthCheckPeriodS: field.healthCheckPeriodS().default(DEFAULTS.healthCheckPeriodS).describe(about.healthCheckPeriodS),
  healthCheckTimeoutS: field.healthCheckTimeoutS().default(DEFAULTS.healthCheckTimeoutS).describe(about.healthCheckTimeoutS),
  gracefulShutdownTimeoutS: field
    .gracefulShutdownTimeoutS()
    .default(DEFAULTS.gracefulShutdownTimeoutS)
    .describe(about.gracefulShutdownTimeoutS),
  outlierDetection: optionalDeploymentShape().outlierDetection,
  env: field.env().default(() => ({})).describe(about.env),
  routePrefix: optionalDeploymentShape().routePrefix,
  colocate: optionalDeploymentShape().colocate,
  resources: optionalDeploymentShape().resources,
}));

/** A fully resolved deployment, as `build` writes it; parsing fills the (non-ingress) defaults. */
export const deploymentConfigSchema = once(() =>
  strict("a deployment", deploymentConfigShape())
    .superRefine(autoNeedsBounds)
    .describe("One deployment with every option resolved."),
);

/** Body of `PATCH /api/applications/:app/deployments/:name`. `userConfig` and `autoscalingConfig` replace the old value whole. */
export const deploymentPatchSchema = once(() =>
  strict("a deployment patch", {
    ...optionalDeploymentShape(),
    name: z
      .never({ error: "a deployment's name cannot be changed: leave name out of the PATCH body (the name is in the URL)" })
      .optional()
      .describe("Not allowed: the deployment is named by the URL."),
    autoscalingConfig: field
      .autoscalingConfig()
      .nullable()
      .optional()
      .describe(`${about.autoscalingConfig} null removes it.`),
    resources: z
      .never({ error: "resources are fixed when the manifests are built: change them in the config and run serve-bin build --target kubernetes (or swarm) again" })
      .optional()
      .describe("Not allowed: resources are set in the built manifests."),
  }).describe("A live change of some of a deployment's options."),
);

/** Options of `@batch(...)` and `batch(fn, opts)`; also what `setBatchOptions` accepts (partial). */
export const batchOptionsSchema = once(() =>
  strict("batch options", {
    maxBatchSize: wholeNumber(1).default(BATCH_DEFAULTS.maxBatchSize).describe("Most calls gathered into one batch. Default 10."),
    batchWaitTimeoutS: seconds(true)
      .default(BATCH_DEFAULTS.batchWaitTimeoutS)
      .describe("Seconds a batch waits for more calls after the first arrives. Default 0.01."),
  }).describe("Batching of one method."),
);

// ---- application, routes, server ----

export const applicationSchema = once(() =>
  strict("an application", {
    name: name("an application").describe("The application's name: unique in the config; names the app in the admin API and in routes."),
    routePrefix: routePrefix()
      .optional()
      .describe('The HTTP path the application\'s ingress serves, e.g. "/my-dag". Left out: the ingress\'s routePrefix in code, else "/".'),
    importPath: importPath().describe('The graph module and export, relative to the config file, e.g. "./graph.ts:default" (export default: "default").'),
    deployments: z
      .array(deploymentSpecSchema(), { error: "expected a list of deployments" })
      .default(() => [])
      .describe("Options per deployment, by name. A deployment left out runs with the options set in code."),
  })
    .superRefine((app, ctx) => {
      for (const [i, first] of duplicates(app.deployments.map((d) => d.name))) {
        ctx.addIssue({
          code: "custom",
          path: ["deployments", i, "name"],
          message: `deployment "${app.deployments[i]!.name}" is listed twice (first at deployments[${first}]): merge the two entries`,
        });
      }
    })
    .describe("One graph served under one route prefix."),
);

const weightField = once(() =>
  z
    .number({ error: "expected a weight ≥ 0, e.g. 70" })
    .min(0, { error: "expected a weight ≥ 0, e.g. 70" })
    .describe("This application's share of the traffic, relative to the others."),
);

/** One `routes` entry; also the body of `PATCH /api/routes`. */
export const routeSchema = once(() =>
  strict("a route", {
    routePrefix: routePrefix().describe('The HTTP path this route serves, e.g. "/classify".'),
    split: z
      .record(name("an application"), weightField(), {
        error: (iss) => (iss.code === "invalid_type" ? "expected a mapping of application names to weights, e.g. { a: 70, b: 30 }" : undefined),
      })
      .refine((s) => Object.values(s).reduce((a, b) => a + b, 0) > 0, {
        error: "the weights add up to 0: give at least one application a weight > 0",
      })
      .describe("Weights by application name; each request goes to one application with probability weight / sum."),
    stickyHeader: z
      .string({ error: 'expected a header name, e.g. "x-user-id"' })
      .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, { error: 'expected a header name, e.g. "x-user-id"' })
      .optional()
      .describe("Request header whose value picks the variant: the same value always gets the same application."),
    shadow: name("an application")
      .optional()
      .describe("An application that also receives a copy of every request; its answer is discarded."),
  }).describe("Traffic splitting (A/B, canary, shadow) between applications on one route. The response names the variant in x-serve-variant."),
);

/** Body of `PATCH /api/routes`: one routes entry, replacing the entry with the same routePrefix. */
export const routePatchSchema = routeSchema;

export const proxyConfigSchema = once(() =>
  strict("proxy", {
    host: host().default("0.0.0.0").describe("Address the HTTP data plane listens on. Default 0.0.0.0."),
    port: port().default(8000).describe("Port of the HTTP data plane; 0 picks a free port. Default 8000."),
    requestTimeoutS: seconds(false).default(60).describe("Seconds a request may take before it is answered 504 and cancelled. Default 60."),
    maxBodyBytes: wholeNumber(1).default(104857600).describe("Largest request body accepted, in bytes; larger ones get 413. Default 104857600 (100 MiB)."),
    errorDetail: z
      .enum(["full", "message"], { error: 'expected "full" (500 bodies carry the stack) or "message" (only the message)' })
      .default("full")
      .describe('What a 500 body tells the client: "full" (message and stack) or "message". Default "full" ("message" in the Docker image).'),
    shutdownTimeoutS: seconds(true).default(8).describe("Seconds SIGTERM waits for requests in flight before exiting. Default 8 (inside Docker's 10 s grace)."),
    bodyTimeoutS: seconds(false)
      .default(60)
      .describe("Seconds a client may take to send a request's whole body (at most requestTimeoutS); a slower one is answered 408 and its connection closed. Default 60."),
    maxConnections: wholeNumber(1)
      .default(4096)
      .describe("Requests the data plane (and, separately, the admin API) holds open at once; past it, 503 at once and the connection is closed. Keep it below the open-file limit (ulimit -n). Default 4096."),
    location: z
      .enum(["ingress", "main"], { error: 'expected "ingress" (each ingress replica listens on the port itself) or "main" (the main process relays every request)' })
      .default("main")
      .describe(
        'Where the data plane listens: "main" (the main process takes every request and relays it to an ingress replica) or "ingress" (each application\'s ingress replicas listen on proxy.port together, with SO_REUSEPORT, so a request reaches its graph without a hop through the main process; the main process listens only while no ingress replica does). With "ingress" a request held by an ingress replica that dies (kill -9, out of memory) loses its connection instead of getting a 503, and maxConnections applies per listener. Default "main".',
      ),
  }).describe("The HTTP data plane. A change needs a server restart."),
);

export const adminConfigSchema = once(() =>
  strict("admin", {
    host: host()
      .default("127.0.0.1")
      .describe("Address the admin API listens on. Default 127.0.0.1; any other needs a token (--admin-token-file or SERVE_BIN_ADMIN_TOKEN)."),
    port: port().default(8265).describe("Port of the admin API; 0 picks a free port. Default 8265."),
  }).describe("The admin API. A change needs a server restart."),
);

export const sharedMemoryConfigSchema = once(() =>
  strict("sharedMemory", {
    enabled: z.boolean({ error: "expected true or false" }).default(true).describe("Send large binary values through shared memory instead of the socket. Default true."),
    thresholdBytes: wholeNumber(0)
      .default(16384)
      .describe("Binary values (ArrayBuffer, typed arrays, DataView) at least this many bytes go through shared memory, smaller ones inline in the socket message. Default 16384: measured crossover on 2 cores, shared memory wins from 4–16 KiB up."),
    arenaBytes: wholeNumber(1)
      .default(268435456)
      .describe("Size of the shared-memory arena each process maps once; give Docker --shm-size at least this. Default 268435456 (256 MiB)."),
  })
    .superRefine((s, ctx) => {
      if (s.thresholdBytes > s.arenaBytes) {
        ctx.addIssue({
          code: "custom",
          path: ["thresholdBytes"],
          message: `thresholdBytes (${s.thresholdBytes}) is larger than arenaBytes (${s.arenaBytes}): lower it or raise arenaBytes`,
        });
      }
    })
    .describe("Shared memory for large binary values between processes. A change needs a server restart."),
);

/** Defaults of `limits`: what a 2-core / 24 GiB host survives with room to spare (an idle replica is ~15 MB RssAnon). */
export const LIMITS_DEFAULTS = Object.freeze({
  maxReplicasPerDeployment: 64,
  maxReplicas: 128,
  maxConcurrentStarts: 8,
  restartBackoffS: 1,
  restartBackoffMaxS: 300,
  restartResetAfterS: 600,
  maxConstructorRetries: 10,
  maxReplicaMemoryBytes: 8 * 1024 ** 3,
  planTimeoutS: 60,
});

export const limitsConfigSchema = once(() =>
  strict("limits", {
    maxReplicasPerDeployment: wholeNumber(1, 100_000)
      .default(LIMITS_DEFAULTS.maxReplicasPerDeployment)
      .describe("Most replicas one deployment may ask for (numReplicas, or autoscalingConfig.maxReplicas). A config, PUT or PATCH asking for more is refused with 422. Default 64."),
    maxReplicas: wholeNumber(1, 100_000)
      .default(LIMITS_DEFAULTS.maxReplicas)
      .describe("Most replicas all applications together may ask for. Default 128."),
    maxConcurrentStarts: wholeNumber(1, 1000)
      .default(LIMITS_DEFAULTS.maxConcurrentStarts)
      .describe("Replicas starting at once; more wait their turn, so a large scale-up never starves the replicas already serving. Default 8."),
    restartBackoffS: seconds(false)
      .max(3600, { error: "expected at most 3600 seconds" })
      .default(LIMITS_DEFAULTS.restartBackoffS)
      .describe("A replica that exits again soon after a restart waits this long before the next one, doubling each time. The first restart is at once. Default 1."),
    restartBackoffMaxS: seconds(false)
      .max(86_400, { error: "expected at most 86400 seconds" })
      .default(LIMITS_DEFAULTS.restartBackoffMaxS)
      .describe("The longest wait between restarts of a crash-looping replica. Default 300 (as Kubernetes' CrashLoopBackOff)."),
    restartResetAfterS: seconds(false)
      .max(86_400, { error: "expected at most 86400 seconds" })
      .default(LIMITS_DEFAULTS.restartResetAfterS)
      .describe("A replica that has run this long counts as healthy again: its next exit restarts it at once. Default 600."),
    maxConstructorRetries: wholeNumber(1, 1000)
      .default(LIMITS_DEFAULTS.maxConstructorRetries)
      .describe("Starts in a row that may fail (constructor throws, or the replica exits before it is ready) before the deployment stops trying until its next change. Default 10."),
    maxReplicaMemoryBytes: wholeNumber(16 * 1024 ** 2)
      .default(LIMITS_DEFAULTS.maxReplicaMemoryBytes)
      .describe("Resident memory one replica may hold; past it the replica is replaced (drained, restarted under the crash-loop backoff) with the reason in status, before the kernel's OOM killer ends it without one. Default 8589934592 (8 GiB)."),
    planTimeoutS: seconds(false)
      .max(3600, { error: "expected at most 3600 seconds" })
      .default(LIMITS_DEFAULTS.planTimeoutS)
      .describe("Seconds importing an application's graph module to plan it may take (in its own short-lived process, never the serving one); a module still running then is killed and the change refused with 422. Default 60."),
  }).describe("Bounds that protect the host from a typo or a crashing model. Applied at once by a PUT."),
);

/** Indexes of repeated values, each with the index of its first occurrence. */
function duplicates(values: readonly (string | undefined)[]): [number, number][] {
  const seen = new Map<string, number>();
  const out: [number, number][] = [];
  values.forEach((v, i) => {
    if (v === undefined) return;
    const first = seen.get(v);
    if (first === undefined) seen.set(v, i);
    else out.push([i, first]);
  });
  return out;
}

type ConfigShape = {
  applications: { name: string; routePrefix?: string }[];
  routes: { routePrefix: string; split: Record<string, number>; shadow?: string }[];
};

/** Cross-field rules: unique names and prefixes; routes only name applications that exist. */
function crossIssues(c: ConfigShape): Issue[] {
  const issues: Issue[] = [];
  for (const [i, first] of duplicates(c.applications.map((a) => a.name))) {
    issues.push({
      path: ["applications", i, "name"],
      message: `application name "${c.applications[i]!.name}" is already used by applications[${first}]: names must be unique`,
    });
  }
  const prefixes: { prefix?: string; path: (string | number)[] }[] = [
    ...c.applications.map((a, i) => ({ prefix: a.routePrefix, path: ["applications", i, "routePrefix"] })),
    ...c.routes.map((r, i) => ({ prefix: r.routePrefix, path: ["routes", i, "routePrefix"] })),
  ];
  for (const [i, first] of duplicates(prefixes.map((p) => p.prefix))) {
    issues.push({
      path: prefixes[i]!.path,
      message: `routePrefix "${prefixes[i]!.prefix}" is already served by ${formatPath(prefixes[first]!.path.slice(0, 2))}: give each a different prefix`,
    });
  }
  const apps = new Set(c.applications.map((a) => a.name));
  const known = () => (apps.size ? [...apps].join(", ") : "none yet");
  c.routes.forEach((r, i) => {
    for (const app of Object.keys(r.split)) {
      if (!apps.has(app)) {
        issues.push({ path: ["routes", i, "split", app], message: `no application named "${app}" (applications: ${known()}): add it or fix the name` });
      }
    }
    if (r.shadow !== undefined && !apps.has(r.shadow)) {
      issues.push({ path: ["routes", i, "shadow"], message: `no application named "${r.shadow}" (applications: ${known()}): add it or fix the name` });
    }
  });
  return issues;
}

/** Log levels, least severe first: a level shows itself and those after it. */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;

export const loggingConfigSchema = once(() =>
  strict("logging", {
    format: z
      .enum(["text", "json"], { error: 'expected "text" (lines for people) or "json" (one JSON object a line)' })
      .default("text")
      .describe('"text": lines as today; "json": one object a line with time, level, msg, app, deployment, replica and requestId, for the server\'s own lines and what user code prints inside a replica. Default "text".'),
    level: z
      .enum(LOG_LEVELS, { error: 'expected one of "debug", "info", "warn", "error"' })
      .default("info")
      .describe('Lines below this level are dropped: console.debug is debug, console.log and console.info are info, console.warn warn, console.error error. Default "info".'),
  }).describe("Server and replica logs. A change needs a server restart."),
);

export const tracingConfigSchema = once(() =>
  strict("tracing", {
    otlpEndpoint: z
      .url({ protocol: /^https?$/, error: 'expected an http(s) URL of an OTLP/HTTP collector, e.g. "http://127.0.0.1:4318"' })
      .optional()
      .describe("OTLP/HTTP collector that receives spans as JSON; a URL without a path gets /v1/traces. Unset (the default): tracing is off and costs nothing."),
    sampleRatio: z
      .number({ error: "expected a number from 0 to 1" })
      .min(0, { error: "expected a number from 0 to 1" })
      .max(1, { error: "expected a number from 0 to 1" })
      .default(1)
      .describe("Share of requests entering without a sampled traceparent that are traced; a request whose traceparent says sampled is always traced. Default 1."),
  }).describe("Traces across hops: one span per deployment call, W3C traceparent in and across every hop, exported over OTLP/HTTP. A change needs a server restart."),
);

/** The whole config file (YAML or JSON). */
export const serveConfigSchema = once(() =>
  strict("the config", {
    proxy: proxyConfigSchema().prefault({}).describe("The HTTP data plane. A change needs a server restart."),
    admin: adminConfigSchema().prefault({}).describe("The admin API. A change needs a server restart."),
    sharedMemory: sharedMemoryConfigSchema()
      .prefault({})
      .describe("Shared memory for large binary values between processes. A change needs a server restart."),
    limits: limitsConfigSchema().prefault({}).describe("Bounds that protect the host: replica counts, starts at once, restart backoff."),
    logging: loggingConfigSchema().prefault({}).describe("Server and replica logs. A change needs a server restart."),
    tracing: tracingConfigSchema().prefault({}).describe("Traces across hops, exported over OTLP/HTTP; off unless otlpEndpoint is set. A change needs a server restart."),
    applications: z
      .array(applicationSchema(), { error: "expected a list of applications" })
      .default(() => [])
      .describe("The applications to serve; names and routePrefixes unique."),
    routes: z
      .array(routeSchema(), { error: "expected a list of routes" })
      .default(() => [])
      .describe("Traffic splits between applications on one route (A/B, canary, shadow)."),
  })
    .superRefine((c, ctx) => {
      for (const issue of crossIssues(c)) ctx.addIssue({ code: "custom", ...issue });
    })
    .describe("A serve-bin config: the server's settings and the applications it serves."),
);

// ---- types ----

/** What `deployment(fn, options)` accepts: every option optional. */
export type DeploymentOptions = z.input<ReturnType<typeof deploymentOptionsSchema>>;
/** A deployment entry of a config file: a name and some options. */
export type DeploymentSpec = z.output<ReturnType<typeof deploymentSpecSchema>>;
/** A deployment with every option resolved, as `build` writes it. */
export type DeploymentConfig = z.output<ReturnType<typeof deploymentConfigSchema>>;
export type DeploymentPatch = z.output<ReturnType<typeof deploymentPatchSchema>>;
export type BatchOptions = z.output<ReturnType<typeof batchOptionsSchema>>;
export type AutoscalingConfig = z.output<ReturnType<typeof autoscalingConfigSchema>>;
export type OutlierDetection = z.output<ReturnType<typeof outlierDetectionSchema>>;
export type ApplicationConfig = z.output<ReturnType<typeof applicationSchema>>;
export type RouteConfig = z.output<ReturnType<typeof routeSchema>>;
export type ProxyConfig = z.output<ReturnType<typeof proxyConfigSchema>>;
export type AdminConfig = z.output<ReturnType<typeof adminConfigSchema>>;
export type SharedMemoryConfig = z.output<ReturnType<typeof sharedMemoryConfigSchema>>;
export type LimitsConfig = z.output<ReturnType<typeof limitsConfigSchema>>;
export type LoggingConfig = z.output<ReturnType<typeof loggingConfigSchema>>;
export type TracingConfig = z.output<ReturnType<typeof tracingConfigSchema>>;
/** A parsed config file: server sections complete, deployment entries as written. */
export type ServeConfig = z.output<ReturnType<typeof serveConfigSchema>>;
/** What may be written in a config file (defaults optional). */
export type ServeConfigInput = z.input<ReturnType<typeof serveConfigSchema>>;
/** An application after the code's options are merged in: what the runtime serves and `build` writes. */
export type ResolvedApplicationConfig = Omit<ApplicationConfig, "routePrefix" | "deployments"> & {
  routePrefix: string;
  deployments: DeploymentConfig[];
};
export type ResolvedServeConfig = Omit<ServeConfig, "applications"> & { applications: ResolvedApplicationConfig[] };

/** Key order of each section, for readable YAML (SPEC section 3 order). */
export const keyOrder = once(() =>
  Object.freeze({
    config: Object.keys(serveConfigSchema().shape),
    proxy: Object.keys(proxyConfigSchema().shape),
    admin: Object.keys(adminConfigSchema().shape),
    sharedMemory: Object.keys(sharedMemoryConfigSchema().shape),
    limits: Object.keys(limitsConfigSchema().shape),
    application: Object.keys(applicationSchema().shape),
    deployment: Object.keys(deploymentConfigShape()),
    autoscaling: Object.keys(autoscalingShape()),
    route: Object.keys(routeSchema().shape),
  }),
);

// ---- parsing at the boundary ----

export type ConfigResult<T> = { ok: true; value: T } | { ok: false; issues: Issue[] };

/**
 * Parse options for the schemas of this module, which each process runs a
 * few times (a config, a PATCH body, a deployment's options in user code):
 * zod's default compiles a fast parser per object schema on its first parse,
 * which costs more than it saves here (first parse of the deployment options
 * 5-9 ms of CPU compiled, 1-3 ms not: paid by every replica at start).
 */
export const ONE_OFF = Object.freeze({ jitless: true });

/** zod's issues as serve-bin `Issue`s; an unknown key's path ends at the key. */
export function toIssues(error: z.ZodError): Issue[] {
  return error.issues.map((iss) => {
    const path = iss.path.map((p) => (typeof p === "symbol" ? String(p) : p));
    if (iss.code === "unrecognized_keys" && iss.keys.length === 1) path.push(iss.keys[0]!);
    return { path, message: iss.message };
  });
}

/**
 * Validates `input` against any schema of this module.
 *
 * @example validate(deploymentPatchSchema(), await req.json()) // { ok: false, issues: [...] } → 422
 */
export function validate<S extends z.ZodType>(schema: S, input: unknown): ConfigResult<z.output<S>> {
  const r = schema.safeParse(input, ONE_OFF);
  return r.success ? { ok: true, value: r.data } : { ok: false, issues: toIssues(r.error) };
}

/**
 * Validates a whole config, applying defaults. `env.errorDetail` (SERVE_BIN_ERROR_DETAIL)
 * fills `proxy.errorDetail` when the config leaves it out.
 *
 * @example
 * const r = parseConfig({ applications: [{ name: "default", importPath: "./graph.ts" }] });
 * if (!r.ok) console.error(formatIssues(r.issues));
 */
export function parseConfig(input: unknown, env: ServeEnv = {}): ConfigResult<ServeConfig> {
  return validate(serveConfigSchema(), withEnvDefaults(input, env));
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

function withEnvDefaults(input: unknown, env: ServeEnv): unknown {
  if (!env.errorDetail || !isRecord(input)) return input;
  const proxy = input.proxy ?? {};
  if (!isRecord(proxy) || proxy.errorDetail !== undefined) return input;
  return { ...input, proxy: { ...proxy, errorDetail: env.errorDetail } };
}

/**
 * An issue path as people write it.
 *
 * @example formatPath(["applications", 0, "deployments", 1, "numReplicas"]) // "applications[0].deployments[1].numReplicas"
 */
export function formatPath(path: readonly (string | number)[]): string {
  let out = "";
  for (const p of path) {
    if (typeof p === "number") out += `[${p}]`;
    else if (/^[A-Za-z_$][\w$]*$/.test(p)) out += out ? `.${p}` : p;
    else out += `[${JSON.stringify(p)}]`;
  }
  return out;
}

/** One line per issue, `path: message`, for the CLI. */
export function formatIssues(issues: readonly Issue[]): string {
  return issues.map((i) => (i.path.length ? `${formatPath(i.path)}: ${i.message}` : i.message)).join("\n");
}
