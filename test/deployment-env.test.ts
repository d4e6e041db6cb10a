/**
 * A deployment's `env`: its replica processes start with those variables
 * (user code reads them, and so does Bun's engine at start, e.g.
 * BUN_JSC_useConcurrentGC on a DAGDriver), and no other deployment's
 * processes get them. A real server, real replica processes.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { postJSON, ROOT, startServer, type RunningServer } from "./harness.ts";

const DIR = join(ROOT, "test/fixtures/env");

/** The variables a process started with (not what it set later). */
const environOf = (pid: number): Record<string, string> =>
  Object.fromEntries(
    readFileSync(`/proc/${pid}/environ`, "utf8")
      .split("\0")
      .filter(Boolean)
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );

async function replicaPids(server: RunningServer): Promise<Record<string, number[]>> {
  const s = (await (await fetch(`${server.adminUrl}/api/applications`)).json()) as {
    applications: Record<string, { deployments: Record<string, { replicas: { pid: number }[] }> }>;
  };
  const deps = s.applications.app!.deployments;
  return Object.fromEntries(Object.entries(deps).map(([name, d]) => [name, d.replicas.map((r) => r.pid)]));
}

describe("a deployment's env", () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startServer(join(DIR, "env.yaml"));
  });
  afterAll(async () => {
    expect(await server?.stop()).toBe(0);
  });

  it("reaches the deployment's user code, and not another deployment's variables", async () => {
    const own = await postJSON(server.url, "SB_TEST_GREETING");
    expect(own.status).toBe(200);
    expect(((await own.json()) as { value: string | null }).value).toBe("hello from env");
    const other = await postJSON(server.url, "BUN_JSC_useConcurrentGC");
    expect(((await other.json()) as { value: string | null }).value).toBeNull();
  });

  it("is in each replica process's environment from its start, the DAGDriver's included", async () => {
    const pids = await replicaPids(server);
    expect(pids.Reader).toHaveLength(1);
    expect(pids.DAGDriver!.length).toBeGreaterThanOrEqual(1);
    for (const pid of pids.DAGDriver!) {
      const env = environOf(pid);
      expect(env.BUN_JSC_useConcurrentGC).toBe("false");
      expect(env.SB_TEST_GREETING).toBeUndefined();
    }
    const reader = environOf(pids.Reader![0]!);
    expect(reader.SB_TEST_GREETING).toBe("hello from env");
    expect(reader.BUN_JSC_useConcurrentGC).toBeUndefined();
  });
});
