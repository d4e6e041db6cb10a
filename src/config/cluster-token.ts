/**
 * The cluster token: the shared secret every TCP link between serve-bin
 * processes proves it knows (SPEC §9). Read once at start from the
 * environment — the value itself, or a file holding it (a Swarm or Kubernetes
 * secret mount) — and passed down typed. The secret never appears in logs:
 * the class prints as `ClusterToken(<redacted>)`.
 */
import { readFileSync } from "node:fs";
import { ServeError } from "../error.ts";

/** Shorter secrets are refused: a guessable token would make the links' authentication decorative. */
export const MIN_CLUSTER_TOKEN_BYTES = 16;
/** A token file larger than this is not a token (a wrong path, a binary): refused rather than read whole. */
const MAX_TOKEN_FILE_BYTES = 4096;

/**
 * The cluster's shared secret, as bytes. Only the link handshake reads it.
 * @example const token = ClusterToken.from("a-long-random-secret-value"); token.bytes.length // 26
 */
export class ClusterToken {
  readonly #bytes: Uint8Array;
  private constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
  }

  /** @throws ServeError("invalid") when the secret is shorter than MIN_CLUSTER_TOKEN_BYTES. */
  static from(secret: string, source = "the cluster token"): ClusterToken {
    const bytes = new TextEncoder().encode(secret);
    if (bytes.byteLength < MIN_CLUSTER_TOKEN_BYTES) {
      throw new ServeError(
        "invalid",
        `${source} is ${bytes.byteLength} bytes long; use at least ${MIN_CLUSTER_TOKEN_BYTES} random bytes (e.g. \`openssl rand -hex 32\`)`,
      );
    }
    return new ClusterToken(bytes);
  }

  /** The secret's bytes (the HMAC key of the link handshake). */
  get bytes(): Uint8Array {
    return this.#bytes;
  }

  toString(): string {
    return "ClusterToken(<redacted>)";
  }
  toJSON(): string {
    return this.toString();
  }
  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return this.toString();
  }
}

/**
 * Reads the cluster token: `SERVE_BIN_CLUSTER_TOKEN` (the secret) or
 * `SERVE_BIN_CLUSTER_TOKEN_FILE` (a path to a file holding it; one trailing
 * newline is ignored). Neither set: undefined (the process makes no TCP
 * links). Both set, an unreadable file, or a short secret: a ServeError saying
 * what to fix.
 *
 * @example readClusterToken({ SERVE_BIN_CLUSTER_TOKEN_FILE: "/run/secrets/serve-bin-cluster-token" })
 */
export function readClusterToken(env: Record<string, string | undefined>, readFile: (path: string) => Buffer = (p) => readFileSync(p)): ClusterToken | undefined {
  const value = env.SERVE_BIN_CLUSTER_TOKEN || undefined;
  const file = env.SERVE_BIN_CLUSTER_TOKEN_FILE || undefined;
  if (value && file) {
    throw new ServeError("invalid", "both SERVE_BIN_CLUSTER_TOKEN and SERVE_BIN_CLUSTER_TOKEN_FILE are set; set only one of them");
  }
  if (value) return ClusterToken.from(value, "SERVE_BIN_CLUSTER_TOKEN");
  if (!file) return undefined;
  let raw: Buffer;
  try {
    raw = readFile(file);
  } catch (e) {
    throw new ServeError("invalid", `SERVE_BIN_CLUSTER_TOKEN_FILE names ${file}, which cannot be read (${(e as Error).message}); point it at the secret's file`);
  }
  if (raw.byteLength > MAX_TOKEN_FILE_BYTES) {
    throw new ServeError("invalid", `SERVE_BIN_CLUSTER_TOKEN_FILE names ${file}, which is ${raw.byteLength} bytes; a token file holds one secret of at most ${MAX_TOKEN_FILE_BYTES} bytes`);
  }
  return ClusterToken.from(raw.toString("utf8").replace(/\r?\n$/, ""), `the token in ${file}`);
}
