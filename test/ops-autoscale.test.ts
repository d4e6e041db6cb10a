/**
 * The controller's own decisions, under a steady load that counts every
 * response: autoscaling on requests in flight (up under load, back to the
 * minimum when idle, each timed), and a replica whose checkHealth() starts
 * throwing replaced without a failed request.
 */
import { describe, expect, it } from "vitest";
import { copyFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { decideReplicas, type AutoscaleState } from "../src/runtime/autoscale.ts";
import type { StatusJSON } from "../src/runtime/control/status.ts";
import { alive, startServer, tempDir, waitFor } from "./harness.ts";
import { startLoad, why } from "./load.ts";

const FIXTURES = join(import.meta.dirname, "fixtures");
type DeploymentStatusJSON = StatusJSON["applications"][string]["deployments"][string];

async function deployment(adminUrl: string, name: string): Promise<DeploymentStatusJSON> {
  const s = (await (await fetch(`${adminUrl}/api/applications`)).json()) as StatusJSON;
  return s.applications.default!.deployments[name]!;
}

const running = (d: DeploymentStatusJSON) => d.replicas.filter((r) => r.state === "RUNNING").length;

describe("autoscaling on requests in flight", () => {
  it('scales a numReplicas "auto" deployment up under load and back to minReplicas when idle, with zero failed requests', async () => {
    await using dir = tempDir("sb-ops-auto-");
    copyFileSync(join(FIXTURES, "ops-autoscale.ts"), join(dir.path, "graph.ts"));
    await using server = await startServer("graph.ts", { cwd: dir.path });
    const idle = await deployment(server.adminUrl, "Slow");
    expect(idle).toMatchObject({ status: "HEALTHY", targetReplicas: 1 });
    expect(idle.replicas).toHaveLength(1);

    // 6 callers of a 100 ms model: ~6 in flight for targetOngoingRequests 1 → maxReplicas 3.
    const load = startLoad({ url: `${server.url}/a`, body: {}, loops: 6 });
    const t0 = performance.now();
    await waitFor(async () => running(await deployment(server.adminUrl, "Slow")) > 1, "a second replica", 20_000, 50);
    const firstUp = performance.now() - t0;
    const three = await waitFor(
      async () => {
        const d = await deployment(server.adminUrl, "Slow");
        return d.targetReplicas === 3 && running(d) === 3 ? d : null;
      },
      "three replicas",
      20_000,
      50,
    );
    const allUp = performance.now() - t0;
    const pids = three.replicas.map((r) => r.pid);
    await load.until((r) => new Set(r.answers.filter((a) => a.status === 200).map((a) => (JSON.parse(a.body) as { pid: number }).pid)).size >= 3, "answers from all three");
    const result = await load.stop();

    const t1 = performance.now();
    const back = await waitFor(
      async () => {
        const d = await deployment(server.adminUrl, "Slow");
        return d.targetReplicas === 1 && d.replicas.length === 1 && running(d) === 1 ? d : null;
      },
      "the scale back to one replica",
      20_000,
      50,
    );
    const down = performance.now() - t1;
    await waitFor(() => pids.filter((p) => p !== back.replicas[0]!.pid).every((p) => !alive(p)), "the extra replicas to exit");

    console.log(
      `\nautoscaling figures (upscaleDelayS 0.5, downscaleDelayS 1):\n  load → 2 RUNNING: ${firstUp.toFixed(0)} ms; → 3 RUNNING: ${allUp.toFixed(0)} ms\n  idle → back to 1: ${down.toFixed(0)} ms\n  ${result.failed} failed of ${result.ok + result.failed}\n`,
    );
    expect(result.failed, why(result)).toBe(0);
    expect(back.replicas[0]!.state).toBe("RUNNING");
  });
});

describe("the autoscaling decision", () => {
  const cfg = { minReplicas: 1, maxReplicas: 4, targetOngoingRequests: 2, upscaleDelayS: 1, downscaleDelayS: 10 };
  const load = (...ongoing: number[]) => ongoing.map((n) => ({ ongoing: n }));

  it("waits upscaleDelayS before scaling up and downscaleDelayS before scaling down, within the bounds", () => {
    const s: AutoscaleState = { desired: null, since: 0 };
    expect(decideReplicas(cfg, load(1), 1, s, 0)).toBe(1); // the first decision: where it is
    s.desired = 1;
    expect(decideReplicas(cfg, load(5), 1, s, 1000)).toBeNull();
    expect(decideReplicas(cfg, load(5), 1, s, 1999)).toBeNull();
    expect(decideReplicas(cfg, load(50), 1, s, 2000)).toBe(4); // 25 wanted, capped at maxReplicas
    expect(decideReplicas(cfg, load(0, 0, 0, 0), 4, s, 3000)).toBeNull();
    expect(decideReplicas(cfg, load(0, 0, 0, 0), 4, s, 13_000)).toBe(1);
  });

  it("starts the delay again when the load turns around", () => {
    const s: AutoscaleState = { desired: 2, since: 0 };
    expect(decideReplicas(cfg, load(0, 0), 2, s, 0)).toBeNull(); // down pending since 0
    expect(decideReplicas(cfg, load(6, 6), 2, s, 9_500)).toBeNull(); // now up: its own 1 s delay
    expect(decideReplicas(cfg, load(6, 6), 2, s, 10_499)).toBeNull();
    expect(decideReplicas(cfg, load(6, 6), 2, s, 10_500)).toBe(4);
  });
});

describe("health checks", () => {
  it("replaces a replica whose checkHealth() starts throwing; status shows the restart; no request fails", async () => {
    await using dir = tempDir("sb-ops-health-");
    copyFileSync(join(FIXTURES, "ops-health.ts"), join(dir.path, "graph.ts"));
    await using server = await startServer("graph.ts", { cwd: dir.path, env: { SB_OPS_DIR: dir.path } });
    const before = await deployment(server.adminUrl, "Sensor");
    expect(before.replicas.map((r) => [r.id, r.state, r.restarts])).toEqual([
      ["Sensor#0", "RUNNING", 0],
      ["Sensor#1", "RUNNING", 0],
    ]);
    const load = startLoad({ url: `${server.url}/h`, body: {}, loops: 4, pauseMs: 2 });
    await load.until((r) => r.ok >= 20, "the first answers");

    writeFileSync(join(dir.path, "sick"), "");
    const t0 = performance.now();
    const sickPid = await waitFor(() => readdirSync(dir.path).find((n) => n.startsWith("sick-"))?.slice("sick-".length), "a replica to turn sick");
    const sick = before.replicas.find((r) => r.pid === Number(sickPid))!;
    expect(sick).toBeDefined();
    const after = await waitFor(
      async () => {
        const d = await deployment(server.adminUrl, "Sensor");
        return d.status === "HEALTHY" && d.replicas.length === 2 && d.replicas.every((r) => r.state === "RUNNING") && !d.replicas.some((r) => r.pid === sick.pid) ? d : null;
      },
      "the sick replica to be replaced",
      20_000,
      50,
    );
    const replacedMs = performance.now() - t0;
    await waitFor(() => !alive(sick.pid), "the sick replica to exit");
    const replacement = after.replicas.find((r) => r.id === sick.id)!;
    expect(replacement).toMatchObject({ id: sick.id, state: "RUNNING", restarts: 1 });
    const since = load.current.answers.length;
    await load.until((r) => r.answers.slice(since).some((a) => a.status === 200 && (JSON.parse(a.body) as { pid: number }).pid === replacement.pid), "an answer from the replacement");
    const result = await load.stop();

    console.log(`\nhealth: sick replica replaced and serving ${replacedMs.toFixed(0)} ms after the marker appeared (healthCheckPeriodS 0.5); ${result.failed} failed of ${result.ok + result.failed}\n`);
    expect(result.failed, why(result)).toBe(0);
    expect(server.output()).toMatch(new RegExp(`default/${sick.id} is being replaced: health check failed: sensor ${sick.pid} is sick`));
    const metrics = await (await fetch(`${server.adminUrl}/metrics`)).text();
    expect(metrics).toContain('serve_bin_replica_restarts_total{app="default",deployment="Sensor"} 1');
  });
});
