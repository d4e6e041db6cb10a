/**
 * serve-bin's config: the zod schema of the file (and of the admin API's
 * PATCH bodies), YAML in and out, its JSON Schema, the change classifier, and
 * the environment, read once.
 */

// Schemas, defaults and types.
export {
  AUTOSCALING_DEFAULTS,
  BATCH_DEFAULTS,
  DEFAULTS,
  INGRESS_DEFAULTS,
  OUTLIER_DEFAULTS,
  keyOrder,
  adminConfigSchema,
  applicationSchema,
  autoscalingConfigSchema,
  batchOptionsSchema,
  deploymentConfigSchema,
  deploymentOptionsSchema,
  deploymentPatchSchema,
  deploymentSpecSchema,
  outlierDetectionSchema,
  proxyConfigSchema,
  routePatchSchema,
  routeSchema,
  serveConfigSchema,
  sharedMemoryConfigSchema,
  type AdminConfig,
  type ApplicationConfig,
  type AutoscalingConfig,
  type BatchOptions,
  type DeploymentConfig,
  type DeploymentOptions,
  type DeploymentPatch,
  type DeploymentSpec,
  type ProxyConfig,
  type ResolvedApplicationConfig,
  type ResolvedServeConfig,
  type RouteConfig,
  type ServeConfig,
  type ServeConfigInput,
  type SharedMemoryConfig,
} from "./schema.ts";

// Validation at the boundary: `{ ok, value } | { ok: false, issues }`.
export { formatIssues, formatPath, parseConfig, parseImportPath, toIssues, validate, type ConfigResult } from "./schema.ts";

// YAML and JSON Schema.
export { parseYAML, toYAML } from "./yaml.ts";
export { configJsonSchema } from "./json-schema.ts";

// What a change costs, and the merges of PATCHes and config files.
export {
  APPLICATION_FIELD_COST,
  FIELD_COST,
  deepEqual,
  diffConfigs,
  isEmptyDiff,
  mergeDeploymentPatch,
  mergeRoutePatch,
  resolveDeployment,
  type ApplicationDiff,
  type ChangeCost,
  type ConfigDiff,
  type DeploymentDiff,
} from "./diff.ts";

// The environment, read once.
export { readEnv, type ErrorDetail, type ServeEnv } from "./env.ts";
export { ClusterToken, MIN_CLUSTER_TOKEN_BYTES, readClusterToken } from "./cluster-token.ts";
