/**
 * The control plane under a careless operator and a crashing model: limits
 * refuse what the host cannot take, a crash loop backs off, and nothing else
 * stops serving. A watcher counts the server's replica processes all along
 * and kills the server if they pass a ceiling, so a regression cannot take
 * the machine down with it.
 */
import { describe, expect, it } from "vitest";
import { copyFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { StatusJSON } from "../src/runtime/control/status.ts";
import { cliCommand, replicasOf, runCli, startServer, stopCleanly, tempDir, waitFor, type RunningServer } from "./harness.ts";
import { startLoad, why } from "./load.ts";

const FIXTURES = join(import.meta.dirname, "fixtures");

/** Counts the server's replica processes every 50 ms; past `ceiling` it kills the server and its replicas. */
function watchProcesses(server: RunningServer, ceiling: number) {
  const pid = server.proc.pid;
  let max = 0;
  const timer = setInterval(() => {
    const replicas = replicasOf(pid);
    max = Math.max(max, replicas.length);
    if (replicas.length > ceiling) for (const p of [pid, ...replicas]) process.kill(p, "SIGKILL");
  }, 50);
  return {
    get max() {
      return max;
    },
    stop: () => clearInterval(timer),
  };
}

async function status(adminUrl: string): Promise<StatusJSON> {
  return (await (await fetch(`${adminUrl}/api/applications`)).json()) as StatusJSON;
}

function patch(adminUrl: string, app: string, name: string, body: unknown): Promise<Response> {
  return fetch(`${adminUrl}/api/applications/${app}/deployments/${name}`, {
    method: "PATCH",
    body: JSON.stringify(body),
    headers: { "content-type": "application/json" },
  });
}

describe("replica limits", () => {
  it("refuses PATCHes for 1e9 and 1e4 replicas, an autoscaler ceiling and a PUT over maxReplicas with 422 naming the limit; nothing changes and the process count stays within it", async () => {
    await using dir = tempDir("sb-limits-");
    copyFileSync(join(FIXTURES, "crash-loop.ts"), join(dir.path, "graph.ts"));
    const config = (extra: string) => `limits: { maxReplicasPerDeployment: 4, maxReplicas: 6 }
applications:
  - name: good
    routePrefix: /good
    importPath: ./graph.ts:good
${extra}`;
    writeFileSync(join(dir.path, "serve.yaml"), config(""));
    await using server = await startServer("serve.yaml", { cwd: dir.path });
    const watcher = watchProcesses(server, 8);
    try {
      for (const numReplicas of [1e9, 1e4, 5]) {
        const res = await patch(server.adminUrl, "good", "Echo", { numReplicas });
        expect(res.status).toBe(422);
        const body = (await res.json()) as { error: string; message: string; issues: { path: unknown[]; message: string }[] };
        expect(body.error).toBe("invalid");
        expect(body.message).toContain(`good/Echo asks for ${numReplicas} replicas; limits.maxReplicasPerDeployment is 4: raise it in the config's limits section`);
        expect(body.issues[0]!.path).toEqual(["applications", "good", "deployments", "Echo", "numReplicas"]);
      }
      const auto = await patch(server.adminUrl, "good", "Echo", { numReplicas: "auto", autoscalingConfig: { minReplicas: 1, maxReplicas: 50 } });
      expect(auto.status).toBe(422);
      expect(((await auto.json()) as { message: string }).message).toContain("asks for 50 replicas; limits.maxReplicasPerDeployment is 4");
      expect((await status(server.adminUrl)).applications.good!.deployments.Echo).toMatchObject({ status: "HEALTHY", targetReplicas: 1 });

      expect((await patch(server.adminUrl, "good", "Echo", { numReplicas: 4 })).status).toBe(200);
      expect((await status(server.adminUrl)).applications.good!.deployments.Echo!.replicas.filter((r) => r.state === "RUNNING")).toHaveLength(4);

      // A whole config whose applications together ask for 9 replicas (each has its DAGDriver too), over maxReplicas 6.
      const put = await fetch(`${server.adminUrl}/api/applications`, {
        method: "PUT",
        body: config(`    deployments: [{ name: Echo, numReplicas: 4 }]
  - name: more
    routePrefix: /more
    importPath: ./graph.ts:good
    deployments: [{ name: Echo, numReplicas: 3 }]
`),
        headers: { "content-type": "application/yaml" },
      });
      expect(put.status).toBe(422);
      expect(((await put.json()) as { message: string }).message).toContain("all applications together ask for 9 replicas; limits.maxReplicas is 6");
      expect(Object.keys((await status(server.adminUrl)).applications)).toEqual(["good"]);
      expect(watcher.max).toBeLessThanOrEqual(5); // 4 Echo and the DAGDriver
    } finally {
      watcher.stop();
    }
    await stopCleanly(server);
  });

  it("refuses at start a config file that asks for more replicas than the limit: exit 2, the limit named, no replica started", async () => {
    await using dir = tempDir("sb-limits-start-");
    copyFileSync(join(FIXTURES, "crash-loop.ts"), join(dir.path, "graph.ts"));
    writeFileSync(
      join(dir.path, "serve.yaml"),
      `applications:
  - name: good
    importPath: ./graph.ts:good
    deployments: [{ name: Echo, numReplicas: 1000 }]
`,
    );
    const proc = Bun.spawn([...cliCommand(), "run", "serve.yaml", "--port", "0", "--admin-port", "0"], { cwd: dir.path, stdout: "pipe", stderr: "pipe" });
    const code = await proc.exited;
    const out = (await new Response(proc.stdout).text()) + (await new Response(proc.stderr).text());
    expect(code).toBe(2);
    expect(out).toContain("good/Echo asks for 1000 replicas; limits.maxReplicasPerDeployment is 64");
    expect(out).not.toContain("starting");
  });
});

describe("limits.maxReplicaMemoryBytes", () => {
  it("replaces a replica that leaks past the limit, says why, counts the restart, and the replacement serves", async () => {
    await using dir = tempDir("sb-limits-mem-");
    copyFileSync(join(FIXTURES, "leaky.ts"), join(dir.path, "graph.ts"));
    writeFileSync(join(dir.path, "serve.yaml"), "limits: { maxReplicaMemoryBytes: 314572800 }\napplications:\n  - name: default\n    importPath: ./graph.ts\n");
    await using server = await startServer("serve.yaml", { cwd: dir.path });
    const first = (await status(server.adminUrl)).applications.default!.deployments.Leaky!.replicas[0]!.pid;
    // 50 MB a request: the 300 MiB limit is passed by the 7th; the guard sees it within a metrics period (1 s).
    // On a busy machine the guard can end the replica while a later request runs on it: that request fails
    // fast with 503, as any request in flight on a replica that ends does; the ones before it answer 200.
    let served = 0;
    for (let i = 0; i < 8; i++) {
      const res = await fetch(server.url, { method: "POST", body: "1", headers: { "content-type": "application/json" } });
      if (res.status === 200) {
        served++;
        continue;
      }
      expect({ status: res.status, error: ((await res.json()) as { error: string }).error }).toEqual({ status: 503, error: "unavailable" });
      break;
    }
    expect(served).toBeGreaterThanOrEqual(5); // nothing failed before the leak had passed the limit
    const replaced = await waitForStatus(server.adminUrl, (d) => d.restarts >= 1 && d.replicas.some((r) => r.state === "RUNNING" && r.pid !== first));
    expect(replaced.restarts).toBeGreaterThanOrEqual(1);
    expect(server.output()).toMatch(/default\/Leaky#0 is being replaced: replica Leaky#0 held \d+ MiB of resident memory, over limits\.maxReplicaMemoryBytes \(300 MiB\); it was replaced/);
    const again = await fetch(server.url, { method: "POST", body: "1", headers: { "content-type": "application/json" } });
    expect(again.status).toBe(200);
    expect(((await again.json()) as { pid: number }).pid).not.toBe(first);
    await stopCleanly(server);
  });
});

async function waitForStatus(adminUrl: string, cond: (d: StatusJSON["applications"][string]["deployments"][string]) => boolean) {
  return waitFor(async () => {
    const d = (await status(adminUrl)).applications.default!.deployments.Leaky!;
    return cond(d) ? d : null;
  }, "the leaking replica to be replaced");
}

describe("an allowed scale-up of 1 → 64", () => {
  it("starts at most maxConcurrentStarts replicas at once while the replica already serving answers every request", async () => {
    await using dir = tempDir("sb-limits-pace-");
    copyFileSync(join(FIXTURES, "crash-loop.ts"), join(dir.path, "graph.ts"));
    writeFileSync(
      join(dir.path, "serve.yaml"),
      `limits: { maxConcurrentStarts: 4 }
applications:
  - name: good
    routePrefix: /good
    importPath: ./graph.ts:good
`,
    );
    await using server = await startServer("serve.yaml", { cwd: dir.path });
    const watcher = watchProcesses(server, 70);
    const load = startLoad({ url: `${server.url}/good`, body: 1, loops: 2 });
    let mostStarting = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const d = (await status(server.adminUrl)).applications.good!.deployments.Echo!;
        mostStarting = Math.max(mostStarting, d.replicas.filter((r) => r.state === "STARTING").length);
        await Bun.sleep(20);
      }
    })();
    try {
      const res = await patch(server.adminUrl, "good", "Echo", { numReplicas: 64 });
      expect(res.status).toBe(200);
      expect((await status(server.adminUrl)).applications.good!.deployments.Echo!.replicas.filter((r) => r.state === "RUNNING")).toHaveLength(64);
    } finally {
      sampling = false;
      await sampler;
      watcher.stop();
    }
    const result = await load.stop();
    expect(result.failed, why(result)).toBe(0);
    expect(mostStarting).toBeGreaterThan(0);
    expect(mostStarting).toBeLessThanOrEqual(4);
    expect(watcher.max).toBeLessThanOrEqual(65);
    console.log(`scale 1 → 64 with maxConcurrentStarts 4: at most ${mostStarting} starting at once; the serving replica answered ${result.ok} of ${result.ok + result.failed}`);
    await stopCleanly(server);
  }, 120_000);
});

describe("a deployment that crash-loops for 40 s next to a healthy one", () => {
  it("restarts under a growing backoff, shows UNHEALTHY with the user's error in status and serve-bin status, and the healthy application answers every request", async () => {
    await using dir = tempDir("sb-crashloop-");
    copyFileSync(join(FIXTURES, "crash-loop.ts"), join(dir.path, "graph.ts"));
    writeFileSync(
      join(dir.path, "serve.yaml"),
      `limits: { restartBackoffS: 0.5, restartBackoffMaxS: 4 }
applications:
  - name: good
    routePrefix: /good
    importPath: ./graph.ts:good
  - name: crashy
    routePrefix: /crashy
    importPath: ./graph.ts:crashy
`,
    );
    await using server = await startServer("serve.yaml", { cwd: dir.path });
    const watcher = watchProcesses(server, 6);
    const load = startLoad({ url: `${server.url}/good`, body: { hello: "world" }, loops: 2, durationMs: 40_000 });
    const samples: StatusJSON["applications"][string]["deployments"][string][] = [];
    let unhealthyApp = false;
    while (performance.now() - (load.current.answers[0]?.sentAt ?? performance.now()) < 40_000 && !watcherTripped(server)) {
      const s = await status(server.adminUrl);
      samples.push(s.applications.crashy!.deployments.Flaky!);
      unhealthyApp ||= s.applications.crashy!.status === "UNHEALTHY";
      await Bun.sleep(250);
    }
    const result = await load.done;
    watcher.stop();
    const cli = await runCli(["status", "--address", server.adminUrl]);

    expect(result.failed, why(result)).toBe(0);
    expect(result.ok).toBeGreaterThan(100);
    expect(watcher.max).toBeLessThanOrEqual(4); // Echo, Flaky and a DAGDriver each, never more
    expect(unhealthyApp).toBe(true);
    const sick = samples.filter((d) => d.status === "UNHEALTHY");
    expect(sick.length).toBeGreaterThan(0);
    expect(sick.at(-1)!.message).toContain("the model's weights are corrupt (simulated)");
    expect(sick.at(-1)!.message).toMatch(/\d+ failures in a row/);
    // The wait between restarts grows (0.5 → 1 → 2 → 4 s) and stays at the cap.
    const waits = samples.map((d) => d.backoffS);
    expect(Math.max(...waits)).toBeGreaterThan(2);
    expect(Math.max(...waits)).toBeLessThanOrEqual(4);
    const restarts = samples.at(-1)!.restarts;
    // Without a backoff it would die ~6 times a second (~240 in 40 s); with it, about 11.
    expect(restarts).toBeGreaterThan(5);
    expect(restarts).toBeLessThan(27);
    console.log(`crash loop: ${restarts} restarts in 40 s; largest wait ${Math.max(...waits)} s; healthy app answered ${result.ok} of ${result.ok + result.failed}`);
    expect(cli.stdout).toContain("UNHEALTHY");
    expect(cli.stdout).toContain("the model's weights are corrupt (simulated)");
    await stopCleanly(server);
  }, 120_000);
});

function watcherTripped(server: RunningServer): boolean {
  return server.proc.exitCode !== null || server.proc.signalCode !== null;
}
