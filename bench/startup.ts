/**
 * startup: the compiled binary `serve-bin run examples/tutorial/graph.ts` to
 * its first 200 on POST /my-dag (the request itself takes the graph's 0.45 s
 * of sleeps, and counts); then PATCH numReplicas of Model 1 → 8 through the
 * admin API until all eight are RUNNING and the graph serves. Baseline: a bare
 * Bun.serve process from spawn to its first 200.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { BINARY, BUN, EXAMPLES, LIB, ROOT } from "./lib/paths.ts";
import { sleep } from "./lib/procs.ts";
import { row, type Scenario } from "./lib/scenario.ts";
import { serveBinAt, type Status } from "./lib/server.ts";
import { median, round } from "./lib/stats.ts";

const BODY = JSON.stringify(["5", [1, 2], "sum"]);
const WANT = "sum(['(1 * (5 + 1.5))', '(2 * (5 + 1.5))'])";

/** Retries POST until it answers 200 with the right body; resolves with the time it did, from `t0`. */
async function firstOk(url: string, t0: number, body: string, want: string | null, timeoutMs = 30_000): Promise<number> {
  for (;;) {
    try {
      const res = await fetch(url, { method: "POST", body, headers: { "content-type": "application/json" } });
      const text = await res.text();
      if (res.status === 200 && (want === null || text === want)) return performance.now() - t0;
    } catch {}
    if (performance.now() - t0 > timeoutMs) throw new Error(`no 200 from ${url} within ${timeoutMs} ms`);
    await sleep(5);
  }
}

const running = (s: Status, dep: string) => Object.values(s.applications)[0]?.deployments[dep]?.replicas.filter((r) => r.state === "RUNNING").length ?? 0;

export const startup: Scenario = {
  name: "startup",
  title: "serve-bin run to first 200, and PATCH numReplicas 1 → 8",
  async run({ quick, procs, log }) {
    const notes: string[] = [];
    if (!existsSync(BINARY)) {
      log("dist/serve-bin is missing: npm run build");
      const b = Bun.spawnSync(["npm", "run", "build"], { cwd: ROOT, stdout: "ignore", stderr: "pipe" });
      if (b.exitCode !== 0) throw new Error(`npm run build failed: ${b.stderr.toString()}`);
      notes.push("dist/serve-bin was built by the bench (npm run build) before this scenario.");
    }
    const trials = quick ? 1 : 3;
    const toOk: number[] = [];
    const toListen: number[] = [];
    const toReady: number[] = [];
    const serverReady: number[] = [];
    const patchMs: number[] = [];
    const patchAnswerMs: number[] = [];
    const bareMs: number[] = [];
    let patchProblem: string | null = null;
    const graph = join(EXAMPLES, "tutorial/graph.ts");
    for (let t = 0; t < trials; t++) {
      // Baseline first: a bare Bun.serve process to its first 200.
      {
        const t0 = performance.now();
        const bare = procs.spawn("bare Bun.serve", [BUN, join(LIB, "bare-server.ts")]);
        const url = (await bare.waitFor(/listening on (http:\/\/\S+)/, 10_000))[1]!;
        bareMs.push(await firstOk(url, t0, "{}", "{}"));
        await bare.stop();
      }
      const t0 = performance.now();
      const proc = procs.spawn("serve-bin (compiled) run tutorial", [BINARY, "run", graph, "--port", "0", "--admin-port", "0"], { cwd: ROOT });
      try {
        const m = await proc.waitFor(/listening on (http:\/\/\S+) \(admin API on (http:\/\/[^\s)]+)\)/, 30_000);
        toListen.push(performance.now() - t0);
        const readyLine = proc.waitFor(/ready in (\d+) ms/, 30_000).then((r) => (toReady.push(performance.now() - t0), serverReady.push(Number(r[1]))));
        toOk.push(await firstOk(`${m[1]}/my-dag`, t0, BODY, WANT));
        await readyLine;
        const server = serveBinAt(proc, m[1]!, m[2]!, serverReady.at(-1)!, procs);

        // PATCH Model 1 → 8, watching the status until all eight are RUNNING.
        const p0 = performance.now();
        let allAt: number | null = null;
        let watching = true;
        const watch = (async () => {
          while (watching) {
            if (running(await server.status(), "Model") >= 8) return void (allAt = performance.now() - p0);
            await sleep(5);
          }
        })();
        const res = await fetch(`${m[2]}/api/applications/default/deployments/Model`, { method: "PATCH", body: JSON.stringify({ numReplicas: 8 }), headers: { "content-type": "application/json" } });
        const answered = performance.now() - p0;
        const text = await res.text();
        if (res.status !== 200) {
          watching = false;
          patchProblem = `PATCH answered ${res.status}: ${text.slice(0, 300)}`;
        } else {
          await Promise.race([watch, sleep(15_000)]);
          watching = false;
          if (allAt === null) patchProblem = "the eight replicas were not all RUNNING 15 s after the PATCH";
          else {
            await firstOk(`${m[1]}/my-dag`, performance.now(), BODY, WANT, 5000); // and the graph serves
            patchAnswerMs.push(answered);
            patchMs.push(Math.max(answered, allAt));
          }
        }
        await server.stop();
      } finally {
        if (proc.proc.exitCode === null) await proc.stop();
      }
    }
    if (patchProblem) notes.push(patchProblem);
    const ok = median(toOk);
    const patch = patchMs.length ? median(patchMs) : null;
    return {
      method: `${trials} cold starts of dist/serve-bin (compiled) on the tutorial graph (7 replica processes); from spawn, POST /my-dag is retried every 5 ms until it answers 200 with the right body: the time includes that request's own 0.45 s of sleeps. Then PATCH /api/applications/default/deployments/Model {numReplicas: 8}; the figure is the later of the PATCH's 200 and the status showing eight RUNNING replicas, after which the graph is checked to answer. Medians over trials.`,
      rows: [
        row({
          id: "startup.first200",
          figure: "serve-bin run (compiled) to first 200 on the tutorial graph",
          unit: "ms",
          value: ok,
          baseline: { label: "bare Bun.serve process to first 200", value: median(bareMs) },
          target: "≤ 1 s",
          met: ok <= 1000,
          digits: 0,
        }),
        row({ id: "startup.ready", figure: "serve-bin run to every replica RUNNING (its own \"ready in\" line, from spawn)", unit: "ms", value: median(toReady), digits: 0 }),
        row({
          id: "startup.patch8",
          figure: "PATCH numReplicas 1 → 8, all eight RUNNING and serving",
          unit: "ms",
          value: patch,
          target: "≤ 1 s",
          met: patch === null ? null : patch <= 1000,
          note: patch === null ? (patchProblem ?? undefined) : undefined,
          digits: 0,
        }),
      ],
      series: {
        spawnToFirst200Ms: toOk.map((v) => round(v, 1)),
        spawnToListeningMs: toListen.map((v) => round(v, 1)),
        spawnToReadyLineMs: toReady.map((v) => round(v, 1)),
        serverReadyInMs: serverReady,
        patchToEightRunningMs: patchMs.map((v) => round(v, 1)),
        patchAnsweredMs: patchAnswerMs.map((v) => round(v, 1)),
        bareBunServeFirst200Ms: bareMs.map((v) => round(v, 1)),
      },
      notes,
    };
  },
};
