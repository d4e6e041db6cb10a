/**
 * The only place serve-bin reads environment variables: read once at start,
 * passed down typed, so no flag is looked up deep in the logic.
 */
import { ServeError } from "../error.ts";
import { readClusterToken, type ClusterToken } from "./cluster-token.ts";

export type ErrorDetail = "full" | "message";

export interface ServeEnv {
  /** `SERVE_BIN_ADMIN_TOKEN`: bearer token for the admin API (`--admin-token-file` or `--admin-token` win). */
  adminToken?: string;
  /**
   * `SERVE_BIN_ERROR_DETAIL`: the default of `proxy.errorDetail` when the
   * config leaves it out. The Docker image sets `message`.
   */
  errorDetail?: ErrorDetail;
  /**
   * `SERVE_BIN_LOG_FORMAT` / `SERVE_BIN_LOG_LEVEL`: how a replica logs. The
   * server sets them from its `logging` config for the replicas it starts.
   */
  logging?: { format: "text" | "json"; level: "debug" | "info" | "warn" | "error" };
  /** `SERVE_BIN_OTLP_ENDPOINT` / `SERVE_BIN_TRACE_SAMPLE_RATIO`: set by the server from its `tracing` config for its replicas. */
  tracing?: { otlpEndpoint: string; sampleRatio: number };
  /** `SERVE_BIN_CLUSTER_TOKEN` or `SERVE_BIN_CLUSTER_TOKEN_FILE`: the secret TCP links between processes prove they know. */
  clusterToken?: ClusterToken;
  /** `SERVE_BIN_STACK`: the Swarm stack a cluster role runs in (the stack file sets it from the service's labels). */
  swarmStack?: string;
  /**
   * The controller role's Kubernetes objects and API server, as the generated
   * manifests and the kubelet set them: `SERVE_BIN_KUBE_CONFIGMAP`,
   * `SERVE_BIN_KUBE_LEASE`, `SERVE_BIN_KUBE_AUTOSCALER` (serve-bin | hpa),
   * `KUBERNETES_SERVICE_HOST`/`_PORT`, and `HOSTNAME` (the pod's name, its
   * identity on the Lease).
   */
  /** `SERVE_BIN_REVISION`: the code revision a replica pod belongs to (the manifests set it from the pod's `serve-bin.dev/revision` label). */
  revision?: string;
  kube?: { configMap?: string; lease?: string; autoscaler?: string; serviceHost?: string; servicePort?: string; podName?: string };
}

/**
 * Reads serve-bin's environment variables. Empty values count as unset.
 *
 * @example
 * const env = readEnv(); // { adminToken: "s3cret" } when SERVE_BIN_ADMIN_TOKEN=s3cret
 */
export function readEnv(env: Record<string, string | undefined> = process.env): ServeEnv {
  const out: ServeEnv = {};
  const token = env.SERVE_BIN_ADMIN_TOKEN;
  if (token) out.adminToken = token;
  const detail = env.SERVE_BIN_ERROR_DETAIL;
  if (detail) {
    if (detail !== "full" && detail !== "message") {
      throw new ServeError(
        "invalid",
        `SERVE_BIN_ERROR_DETAIL is "${detail}": set it to "full" (stacks in 500 bodies) or "message"`,
      );
    }
    out.errorDetail = detail;
  }
  const format = env.SERVE_BIN_LOG_FORMAT;
  const level = env.SERVE_BIN_LOG_LEVEL;
  if (format || level) {
    if (format && format !== "text" && format !== "json") throw new ServeError("invalid", `SERVE_BIN_LOG_FORMAT is "${format}": set it to "text" or "json"`);
    if (level && !["debug", "info", "warn", "error"].includes(level)) throw new ServeError("invalid", `SERVE_BIN_LOG_LEVEL is "${level}": set it to debug, info, warn or error`);
    out.logging = { format: (format || "text") as "text" | "json", level: (level || "info") as "debug" | "info" | "warn" | "error" };
  }
  const otlp = env.SERVE_BIN_OTLP_ENDPOINT;
  if (otlp) {
    const ratio = Number(env.SERVE_BIN_TRACE_SAMPLE_RATIO || "1");
    if (!(ratio >= 0 && ratio <= 1)) throw new ServeError("invalid", `SERVE_BIN_TRACE_SAMPLE_RATIO is "${env.SERVE_BIN_TRACE_SAMPLE_RATIO}": set it to a number from 0 to 1`);
    out.tracing = { otlpEndpoint: otlp, sampleRatio: ratio };
  }
  const clusterToken = readClusterToken(env);
  if (clusterToken) out.clusterToken = clusterToken;
  if (env.SERVE_BIN_STACK) out.swarmStack = env.SERVE_BIN_STACK;
  if (env.SERVE_BIN_REVISION) out.revision = env.SERVE_BIN_REVISION;
  const kube = {
    configMap: env.SERVE_BIN_KUBE_CONFIGMAP,
    lease: env.SERVE_BIN_KUBE_LEASE,
    autoscaler: env.SERVE_BIN_KUBE_AUTOSCALER,
    serviceHost: env.KUBERNETES_SERVICE_HOST,
    servicePort: env.KUBERNETES_SERVICE_PORT,
  };
  if (Object.values(kube).some(Boolean)) out.kube = { ...Object.fromEntries(Object.entries(kube).filter(([, v]) => v)), podName: env.HOSTNAME || undefined };
  return out;
}
