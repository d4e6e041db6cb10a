/**
 * The only place serve-bin reads environment variables: read once at start,
 * passed down typed, so no flag is looked up deep in the logic.
 */
import { ServeError } from "../error.ts";
import { readClusterToken, type ClusterToken } from "./cluster-token.ts";

export type ErrorDetail = "full" | "message";

export interface ServeEnv {
  /** `SERVE_BIN_ADMIN_TOKEN`: bearer token for the admin API (`--admin-token` wins). */
  adminToken?: string;
  /**
   * `SERVE_BIN_ERROR_DETAIL`: the default of `proxy.errorDetail` when the
   * config leaves it out. The Docker image sets `message`.
   */
  errorDetail?: ErrorDetail;
  /** `SERVE_BIN_CLUSTER_TOKEN` or `SERVE_BIN_CLUSTER_TOKEN_FILE`: the secret TCP links between processes prove they know. */
  clusterToken?: ClusterToken;
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
  const clusterToken = readClusterToken(env);
  if (clusterToken) out.clusterToken = clusterToken;
  return out;
}
