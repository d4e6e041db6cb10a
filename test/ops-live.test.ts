/**
 * Live changes through the admin API, against the compiled binary, each under
 * a steady load that counts every response: scaling 1 → 4 → 1 (scale-down
 * drains), a userConfig change reconfigured in place, and a failing
 * reconfigure() rolled back. The figures for the closing note are printed.
 */
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { copyFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { StatusJSON } from "../src/runtime/control/status.ts";
import { alive, leftovers, startServer, tempDir, waitFor, type RunningServer, type TempDir } from "./harness.ts";
import { startLoad, why, type Answer } from "./load.ts";

interface ModelAnswer {
  graph: string;
  weights: string;
  pid: number;
  x: number;
  consistent: boolean;
}
type DeploymentStatusJSON = StatusJSON["applications"][string]["deployments"][string];

let dir: TempDir;
let server: RunningServer;

// Each test gets its own server: none depends on what another left behind, or on the order they ran in.
beforeEach(async () => {
  dir = tempDir("sb-ops-live-");
  copyFileSync(join(import.meta.dirname, "fixtures/ops-model.ts"), join(dir.path, "graph.ts"));
  server = await startServer("graph.ts", { compiled: true, cwd: dir.path, env: { SB_OPS_DIR: dir.path } });
});

afterEach(async () => {
  if (server) {
    const pid = server.proc.pid;
    expect(await server.stop()).toBe(0);
    expect(leftovers(pid)).toEqual([]);
  }
  await dir?.[Symbol.asyncDispose]();
});

async function status(): Promise<StatusJSON> {
  return (await (await fetch(`${server.adminUrl}/api/applications`)).json()) as StatusJSON;
}

async function model(): Promise<DeploymentStatusJSON> {
  return (await status()).applications.default!.deployments.Model!;
}

/** PATCHes the Model deployment; returns the answer and how long it took. */
async function patch(body: unknown): Promise<{ status: number; body: Record<string, unknown>; ms: number }> {
  const t0 = performance.now();
  const res = await fetch(`${server.adminUrl}/api/applications/default/deployments/Model`, {
    method: "PATCH",
    body: JSON.stringify(body),
    headers: { "content-type": "application/json" },
  });
  const json = (await res.json()) as Record<string, unknown>;
  return { status: res.status, body: json, ms: performance.now() - t0 };
}

/** Waits until Model has exactly `n` replicas, all RUNNING (stopped ones gone from the list). */
async function settledAt(n: number): Promise<DeploymentStatusJSON> {
  return waitFor(
    async () => {
      const d = await model();
      return d.status === "HEALTHY" && d.replicas.length === n && d.replicas.every((r) => r.state === "RUNNING") ? d : null;
    },
    `Model to settle at ${n} replicas`,
    30_000,
  );
}

/** Brings Model to `n` replicas running `weights`, as an earlier test would have left it. */
async function arrange(n: number, weights: string): Promise<DeploymentStatusJSON> {
  expect((await patch({ numReplicas: n, userConfig: { weights } })).status).toBe(200);
  return settledAt(n);
}

const parsed = (a: Answer) => JSON.parse(a.body) as ModelAnswer;
const sortedPids = (d: DeploymentStatusJSON) => d.replicas.map((r) => r.pid).sort((a, b) => a - b);
const figures: string[] = [];

afterAll(() => {
  if (figures.length) console.log(`\nops-live figures:\n  ${figures.join("\n  ")}\n`);
});

describe("PATCH numReplicas under load (compiled binary)", () => {
  it("scales Model 1 → 4 → 1 with zero failed requests, draining the requests in flight on the replicas it stops", async () => {
    const start = await settledAt(1);
    const load = startLoad({ url: `${server.url}/m`, body: { x: 1, sleepMs: 150 }, loops: 8 });
    await load.until((r) => r.ok >= 10, "the first answers");

    const up = await patch({ numReplicas: 4 });
    expect(up.status).toBe(200);
    expect(up.body).toMatchObject({ status: "HEALTHY", targetReplicas: 4 });
    const four = up.body as unknown as DeploymentStatusJSON;
    expect(four.replicas.map((r) => r.state)).toEqual(["RUNNING", "RUNNING", "RUNNING", "RUNNING"]);
    expect(four.replicas.map((r) => r.pid)).toContain(start.replicas[0]!.pid);
    expect(four.replicas.every((r) => alive(r.pid))).toBe(true);
    // Every new replica takes requests.
    const fourPids = new Set(four.replicas.map((r) => r.pid));
    const sinceUp = load.current.answers.length;
    await load.until((r) => new Set(r.answers.slice(sinceUp).filter((a) => a.status === 200).map((a) => parsed(a).pid)).size === 4, "answers from all 4 replicas");

    const downSentAt = performance.now();
    const down = await patch({ numReplicas: 1 });
    expect(down.status).toBe(200);
    expect(down.body).toMatchObject({ status: "HEALTHY", targetReplicas: 1 });
    const one = await settledAt(1);
    const stopped = [...fourPids].filter((p) => p !== one.replicas[0]!.pid);
    await waitFor(() => stopped.every((p) => !alive(p)), "the stopped replicas to exit", 30_000);
    const sinceDown = load.current.answers.length;
    await load.until((r) => r.ok >= sinceDown + 10, "answers after the scale-down");
    const result = await load.stop();

    figures.push(`1 → 4 → 1 under load: ${result.failed} failed of ${result.ok + result.failed}; PATCH 1→4 ${up.ms.toFixed(0)} ms, 4→1 ${down.ms.toFixed(0)} ms`);
    expect(result.failed, why(result)).toBe(0);
    // Requests that were running on a stopped replica when the scale-down began finished there.
    const drained = result.answers.filter((a) => a.status === 200 && a.sentAt < downSentAt && a.doneAt > downSentAt && stopped.includes(parsed(a).pid));
    expect(drained.length).toBeGreaterThan(0);
  });
});

describe("PATCH userConfig under load (compiled binary)", () => {
  it("reconfigures every replica in place: the answer changes everywhere, the pids do not, no request sees a half-applied change", async () => {
    expect((await patch({ numReplicas: 4 })).status).toBe(200);
    const before = await settledAt(4);
    const pids = sortedPids(before);
    const load = startLoad({ url: `${server.url}/m`, body: { x: 2, sleepMs: 20 }, loops: 6 });
    await load.until((r) => new Set(r.answers.filter((a) => a.status === 200).map((a) => parsed(a).pid)).size === 4, "answers from all 4 replicas");
    expect(new Set(load.current.answers.map((a) => parsed(a).weights))).toEqual(new Set(["w1"]));

    const change = await patch({ userConfig: { weights: "w2" } });
    const doneAt = performance.now();
    expect(change.status).toBe(200);
    expect(change.body).toMatchObject({ status: "HEALTHY", targetReplicas: 4 });
    // Every replica answers with the new weights from then on.
    const after = (r: { answers: Answer[] }) => r.answers.filter((a) => a.sentAt > doneAt);
    await load.until((r) => new Set(after(r).map((a) => parsed(a).pid)).size === 4, "answers from all 4 replicas after the change");
    const result = await load.stop();

    figures.push(`userConfig change with 4 replicas under load: PATCH answered in ${change.ms.toFixed(0)} ms; ${result.failed} failed of ${result.ok + result.failed}`);
    expect(result.failed, why(result)).toBe(0);
    expect(sortedPids(await model())).toEqual(pids);
    expect(new Set(after(result).map((a) => parsed(a).weights))).toEqual(new Set(["w2"]));
    expect(new Set(after(result).map((a) => parsed(a).pid))).toEqual(new Set(pids));
    const answers = result.answers.map(parsed);
    expect(answers.filter((a) => !a.consistent || a.weights === "loading")).toEqual([]);
    expect(new Set(answers.map((a) => a.weights))).toEqual(new Set(["w1", "w2"]));
  });

  it("gives a replica started after the change the current userConfig, not the code's", async () => {
    const pids = sortedPids(await arrange(4, "w2"));
    const load = startLoad({ url: `${server.url}/m`, body: { x: 3, sleepMs: 20 }, loops: 6 });
    const up = await patch({ numReplicas: 5 });
    expect(up.status).toBe(200);
    const fresh = sortedPids(await settledAt(5)).filter((p) => !pids.includes(p));
    expect(fresh).toHaveLength(1);
    await load.until((r) => r.answers.some((a) => a.status === 200 && parsed(a).pid === fresh[0]), "an answer from the new replica");
    const result = await load.stop();
    expect(result.failed, why(result)).toBe(0);
    expect(new Set(result.answers.map((a) => parsed(a).weights))).toEqual(new Set(["w2"]));
  });
});

describe("a reconfigure() that throws (compiled binary)", () => {
  it("refuses the PATCH with the user's error when every replica throws; every replica keeps the previous userConfig", async () => {
    const pids = sortedPids(await arrange(5, "w2"));
    const load = startLoad({ url: `${server.url}/m`, body: { x: 4, sleepMs: 20 }, loops: 6 });
    await load.until((r) => r.ok >= 10, "the first answers");

    const bad = await patch({ userConfig: { weights: "bad" } });
    expect(bad.status).toBe(500);
    expect(bad.body).toEqual({
      error: "user",
      message: expect.stringMatching(/^reconfigure\(\) of Model failed on replica Model#\d+; the change was rolled back on every replica: weights "bad" cannot be loaded$/),
      deployment: "Model",
      stack: expect.stringContaining('weights "bad" cannot be loaded'),
    });
    const doneAt = performance.now();
    const sinceBad = load.current.answers.length;
    await load.until((r) => new Set(r.answers.slice(sinceBad).map((a) => parsed(a).pid)).size === 5, "answers from all 5 replicas after the refusal");
    const result = await load.stop();

    expect(result.failed, why(result)).toBe(0);
    // No replica ever answered with the refused weights.
    expect(new Set(result.answers.map((a) => parsed(a).weights))).toEqual(new Set(["w2"]));
    expect(result.answers.filter((a) => a.sentAt > doneAt).length).toBeGreaterThan(0);
    expect(sortedPids(await model())).toEqual(pids);
    const s = await status();
    expect(s.applications.default!.message).toMatch(/^reconfigure of Model failed on replica Model#\d+ and was rolled back: weights "bad" cannot be loaded$/);
    expect((await (await fetch(`${server.adminUrl}/api/config`)).json()) as unknown).toMatchObject({
      applications: [{ deployments: expect.arrayContaining([expect.objectContaining({ name: "Model", userConfig: { weights: "w2" } })]) }],
    });
  });

  it("rolls back the replicas that had already changed when one replica throws; after the refusal every replica answers the previous userConfig", async () => {
    const pids = sortedPids(await arrange(5, "w2"));
    writeFileSync(join(dir.path, "fail-once"), "");
    const load = startLoad({ url: `${server.url}/m`, body: { x: 5, sleepMs: 20 }, loops: 6 });
    await load.until((r) => r.ok >= 10, "the first answers");

    const flaky = await patch({ userConfig: { weights: "flaky" } });
    const doneAt = performance.now();
    expect(flaky.status).toBe(500);
    expect(flaky.body).toMatchObject({
      error: "user",
      deployment: "Model",
      message: expect.stringMatching(/^reconfigure\(\) of Model failed on replica Model#\d+; the change was rolled back on every replica: weights "flaky" failed to load in \d+$/),
    });
    const after = (r: { answers: Answer[] }) => r.answers.filter((a) => a.sentAt > doneAt);
    await load.until((r) => new Set(after(r).map((a) => parsed(a).pid)).size === 5, "answers from all 5 replicas after the refusal");
    const result = await load.stop();

    expect(result.failed, why(result)).toBe(0);
    expect(new Set(after(result).map((a) => parsed(a).weights))).toEqual(new Set(["w2"]));
    // Replicas that had changed answered the new weights until they went back; the one that threw never answered half-applied.
    const refused = result.answers.filter((a) => a.sentAt < doneAt && parsed(a).weights === "flaky").length;
    figures.push(`reconfigure failing on 1 of 5 replicas: ${refused} answers carried the refused userConfig before the rollback; ${result.failed} failed`);
    expect(result.answers.map(parsed).filter((a) => !a.consistent || a.weights === "loading")).toEqual([]);
    expect(sortedPids(await model())).toEqual(pids);
    expect((await status()).applications.default!.message).toMatch(/rolled back: weights "flaky" failed to load in \d+$/);

    // A good change afterwards applies, and clears the message.
    const good = await patch({ userConfig: { weights: "w3" } });
    expect(good.status).toBe(200);
    expect((await status()).applications.default!.message).toBe("");
  });
});

describe("figures", () => {
  it("measures PATCH numReplicas 1 → 8 on a small model until every new replica serves", async () => {
    expect((await patch({ numReplicas: 1 })).status).toBe(200);
    await settledAt(1);
    const load = startLoad({ url: `${server.url}/m`, body: { x: 6 }, loops: 4, pauseMs: 2 });
    await load.until((r) => r.ok >= 10, "the first answers");
    const t0 = performance.now();
    const up = await patch({ numReplicas: 8 });
    expect(up.status).toBe(200);
    const patched = performance.now() - t0;
    const since = load.current.answers.length;
    await load.until((r) => new Set(r.answers.slice(since).filter((a) => a.status === 200).map((a) => parsed(a).pid)).size === 8, "answers from all 8 replicas", 30_000);
    const serving = performance.now() - t0;
    const result = await load.stop();
    figures.push(`PATCH numReplicas 1 → 8: answered (all RUNNING) after ${patched.toFixed(0)} ms; answers from all 8 after ${serving.toFixed(0)} ms; ${result.failed} failed of ${result.ok + result.failed}`);
    expect(result.failed, why(result)).toBe(0);
    expect((up.body as unknown as DeploymentStatusJSON).replicas.map((r) => r.state)).toEqual(Array(8).fill("RUNNING"));

    const down = await patch({ numReplicas: 1 });
    expect(down.status).toBe(200);
    await settledAt(1);
  });
});
