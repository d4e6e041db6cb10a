/**
 * Operational changes that must not half-apply: a PATCH of `env` rolls the
 * deployment (issue 16), code edited on disk is refused by new replicas while
 * the old ones keep serving (issue 16), and a refused PUT is not saved to
 * --state-dir (issue 17 item 3).
 */
import { describe, expect, it } from "vitest";
import { copyFileSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { StatusJSON } from "../src/runtime/control/status.ts";
import { postJSON, startServer, stopCleanly, tempDir, waitFor, type RunningServer } from "./harness.ts";

const FIXTURES = join(import.meta.dirname, "fixtures");

interface EnvAnswer {
  pid: number;
  mode: string | null;
  graph: string;
}

async function status(server: RunningServer): Promise<StatusJSON> {
  return (await (await fetch(`${server.adminUrl}/api/applications`)).json()) as StatusJSON;
}

async function modelPids(server: RunningServer): Promise<number[]> {
  return (await status(server)).applications.default!.deployments.Model!.replicas.map((r) => r.pid).sort();
}

async function patchModel(server: RunningServer, body: unknown, query = ""): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${server.adminUrl}/api/applications/default/deployments/Model${query}`, {
    method: "PATCH",
    body: JSON.stringify(body),
    headers: { "content-type": "application/json" },
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** Asks until every pid in `pids` has answered; returns one answer per pid. */
async function answersFrom(server: RunningServer, pids: number[]): Promise<Map<number, EnvAnswer>> {
  const seen = new Map<number, EnvAnswer>();
  await waitFor(async () => {
    const res = await postJSON(server.url, {});
    expect(res.status).toBe(200);
    const a = (await res.json()) as EnvAnswer;
    seen.set(a.pid, a);
    return pids.every((p) => seen.has(p));
  }, `answers from every replica (${pids.join(", ")})`);
  return seen;
}

describe("a PATCH of env", () => {
  it("rolls the deployment: every replica is a new process and sees the new variable", async () => {
    await using dir = tempDir("sb-ops-env-");
    copyFileSync(join(FIXTURES, "env-model.ts"), join(dir.path, "graph.ts"));
    const server = await startServer("graph.ts", { cwd: dir.path });
    try {
      const before = await modelPids(server);
      expect(before).toHaveLength(2);
      expect(new Set([...(await answersFrom(server, before)).values()].map((a) => a.mode))).toEqual(new Set(["a"]));

      const res = await patchModel(server, { env: { SB_MODE: "b" } });
      expect(res.status).toBe(200);
      const after: number[] = await waitFor(async () => {
        const s = (await status(server)).applications.default!.deployments.Model!;
        const pids = s.replicas.map((r) => r.pid);
        return s.status === "HEALTHY" && pids.length === 2 && pids.every((p) => !before.includes(p)) ? pids : null;
      }, "two new Model replicas, HEALTHY");
      expect(after.filter((p) => before.includes(p))).toEqual([]);
      const seen = await answersFrom(server, after);
      expect([...seen.values()].filter((a) => after.includes(a.pid)).map((a) => a.mode)).toEqual(["b", "b"]);
      const config = (await (await fetch(`${server.adminUrl}/api/config`)).json()) as { applications: { deployments: { name: string; env?: Record<string, string> }[] }[] };
      expect(config.applications[0]!.deployments.find((d) => d.name === "Model")!.env).toEqual({ SB_MODE: "b" });
    } finally {
      await stopCleanly(server);
    }
  });
});

describe("graph.ts edited on disk while serving", () => {
  it("a replica started by a scale-up refuses with a message naming the file and how to roll it out; the old replicas keep serving", async () => {
    await using dir = tempDir("sb-ops-edit-");
    const graph = join(dir.path, "graph.ts");
    copyFileSync(join(FIXTURES, "env-model.ts"), graph);
    const server = await startServer("graph.ts", { cwd: dir.path });
    try {
      const before = await modelPids(server);
      writeFileSync(graph, readFileSync(graph, "utf8").replace('graph: "v1"', 'graph: "v2"'));

      const res = await patchModel(server, { numReplicas: 3 }, "?wait=false");
      expect(res.status).toBe(202);
      const message = await waitFor(async () => {
        const d = (await status(server)).applications.default!.deployments.Model!;
        return d.message.includes("changed on disk") && d.message;
      }, "the status to say the new replica refused to start");
      expect(message).toContain(graph);
      expect(message).toMatch(/serve-bin deploy|PUT \/api\/applications/);

      // No replica runs the edited code; the two old ones still answer with the old one.
      const d = (await status(server)).applications.default!.deployments.Model!;
      expect(d.replicas.filter((r) => r.state === "RUNNING").map((r) => r.pid).sort()).toEqual(before);
      const seen = await answersFrom(server, before);
      expect([...seen.values()].map((a) => a.graph)).toEqual(["v1", "v1"]);
      for (let i = 0; i < 10; i++) {
        const r = await postJSON(server.url, {});
        expect(r.status).toBe(200);
        expect(((await r.json()) as EnvAnswer).graph).toBe("v1");
      }
    } finally {
      await stopCleanly(server);
    }
  });
});

describe("a refused PUT and --state-dir", () => {
  const put = (server: RunningServer, deployment: Record<string, unknown>) =>
    fetch(`${server.adminUrl}/api/applications`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        // One failed start is enough to give up: the refusal comes without minutes of backoff.
        limits: { maxConstructorRetries: 1 },
        applications: [{ name: "default", importPath: "./graph.ts:default", routePrefix: "/m", deployments: [{ name: "Model", ...deployment }] }],
      }),
    });

  /**
   * Serves ops-model.ts with --state-dir, PUTs an accepted config, then `refuse`
   * (which must be answered with `status` and `message`); the state file must not
   * change, and a restart with the same --state-dir must serve the accepted config.
   */
  async function refusedThenRestart(refuse: Record<string, unknown>, want: { status: number; message: string }) {
    await using dir = tempDir("sb-ops-refused-");
    copyFileSync(join(FIXTURES, "ops-model.ts"), join(dir.path, "graph.ts"));
    const stateDir = join(dir.path, "state");
    const args = ["--state-dir", stateDir];
    const first = await startServer("graph.ts", { cwd: dir.path, args });
    try {
      const ok = await put(first, { numReplicas: 2, userConfig: { weights: "accepted" } });
      expect(ok.status).toBe(200);
      const saved = readFileSync(join(stateDir, "config.json"), "utf8");
      expect(JSON.parse(saved).config.applications[0].deployments.find((d: { name: string }) => d.name === "Model")).toMatchObject({ numReplicas: 2, userConfig: { weights: "accepted" } });

      const refused = await put(first, refuse);
      const body = (await refused.json()) as { message: string };
      expect({ status: refused.status, message: body.message }).toEqual({ status: want.status, message: expect.stringContaining(want.message) });
      expect(readFileSync(join(stateDir, "config.json"), "utf8")).toBe(saved);
      expect(readdirSync(stateDir)).toEqual(["config.json"]);
    } finally {
      await stopCleanly(first);
    }

    const second = await startServer("graph.ts", { cwd: dir.path, args });
    try {
      expect(second.output()).toContain(`restoring the applied config from ${stateDir}`);
      const d = (await status(second)).applications.default!.deployments.Model!;
      expect(d).toMatchObject({ status: "HEALTHY", targetReplicas: 2 });
      const res = await postJSON(`${second.url}/m`, { x: 1 });
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ weights: "accepted", x: 1 });
    } finally {
      await stopCleanly(second);
    }
  }

  // Issue 17 item 3: the server persists a config only once the applications it changed serve; this PUT
  // answers 503 "failed to deploy" and the restart comes back with the last config that served.
  it("is not saved when the replicas it rolls out cannot start", async () => {
    // A changed env rolls the deployment; the new replicas' reconfigure("bad") throws at start.
    await refusedThenRestart({ numReplicas: 2, env: { SB_ROLL: "1" }, userConfig: { weights: "bad" } }, { status: 503, message: 'weights "bad" cannot be loaded' });
  });
});
