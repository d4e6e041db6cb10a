import { describe, expect, it } from "vitest";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { ClusterToken, MIN_CLUSTER_TOKEN_BYTES, readClusterToken } from "../src/config/cluster-token.ts";
import { readEnv } from "../src/config/env.ts";
import { ServeError } from "../src/error.ts";
import { tempDir } from "./harness.ts";

const SECRET = "0123456789abcdef0123456789abcdef";

function refusal(fn: () => unknown): ServeError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ServeError);
    expect((e as ServeError).code).toBe("invalid");
    return e as ServeError;
  }
  throw new Error("expected a refusal");
}

describe("the cluster token", () => {
  it("is read from SERVE_BIN_CLUSTER_TOKEN, and absent when neither variable is set", () => {
    expect(readClusterToken({ SERVE_BIN_CLUSTER_TOKEN: SECRET })!.bytes).toEqual(new TextEncoder().encode(SECRET));
    expect(readClusterToken({})).toBeUndefined();
    expect(readClusterToken({ SERVE_BIN_CLUSTER_TOKEN: "", SERVE_BIN_CLUSTER_TOKEN_FILE: "" })).toBeUndefined();
    expect(readEnv({ SERVE_BIN_CLUSTER_TOKEN: SECRET }).clusterToken).toBeInstanceOf(ClusterToken);
  });

  it("is read from the file SERVE_BIN_CLUSTER_TOKEN_FILE names, without its trailing newline", async () => {
    await using dir = tempDir();
    const file = join(dir.path, "token");
    writeFileSync(file, `${SECRET}\n`);
    expect(readClusterToken({ SERVE_BIN_CLUSTER_TOKEN_FILE: file })!.bytes).toEqual(new TextEncoder().encode(SECRET));
  });

  it("refuses a token shorter than the minimum, saying how to make one", () => {
    const short = "x".repeat(MIN_CLUSTER_TOKEN_BYTES - 1);
    expect(refusal(() => readClusterToken({ SERVE_BIN_CLUSTER_TOKEN: short })).message).toBe(
      `SERVE_BIN_CLUSTER_TOKEN is ${MIN_CLUSTER_TOKEN_BYTES - 1} bytes long; use at least ${MIN_CLUSTER_TOKEN_BYTES} random bytes (e.g. \`openssl rand -hex 32\`)`,
    );
    expect(readClusterToken({ SERVE_BIN_CLUSTER_TOKEN: "x".repeat(MIN_CLUSTER_TOKEN_BYTES) })).toBeInstanceOf(ClusterToken);
  });

  it("refuses both variables at once, a missing file and a file too large to be a token", async () => {
    expect(refusal(() => readClusterToken({ SERVE_BIN_CLUSTER_TOKEN: SECRET, SERVE_BIN_CLUSTER_TOKEN_FILE: "/x" })).message).toContain("set only one of them");
    await using dir = tempDir();
    expect(refusal(() => readClusterToken({ SERVE_BIN_CLUSTER_TOKEN_FILE: join(dir.path, "missing") })).message).toContain("cannot be read");
    const big = join(dir.path, "big");
    writeFileSync(big, "x".repeat(4097));
    expect(refusal(() => readClusterToken({ SERVE_BIN_CLUSTER_TOKEN_FILE: big })).message).toContain("at most 4096 bytes");
  });

  it("never prints its secret", () => {
    const t = ClusterToken.from(SECRET);
    expect(String(t)).toBe("ClusterToken(<redacted>)");
    expect(JSON.stringify({ t })).toBe('{"t":"ClusterToken(<redacted>)"}');
    expect(Bun.inspect(t)).not.toContain(SECRET);
  });
});
