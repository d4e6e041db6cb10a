/**
 * What the real-model scenarios (vad, ocr) measure, on one server running
 * bench/fixtures/<name>.ts:
 *   1. served latency over `dag.execute()`: the example's own graph at
 *      /bench/<name> against the same graph run in one fresh Bun process
 *      (its HTTP adapter, then execute; lib/local-runner.ts), one request at
 *      a time, in alternating halves;
 *   2. throughput batched vs unbatched: the same model at /bench/batched and
 *      /bench/unbatched under CONNECTIONS concurrent POSTs, alternating rounds;
 *   3. RssAnon of each model replica: idle after phase 1, peak during phase 2.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BENCH, BUN, LIB, ROOT } from "./paths.ts";
import { cpuMs } from "./cpu.ts";
import { rssOf, type Rss } from "./procs.ts";
import { alternate, row, type Ctx, type Measured } from "./scenario.ts";
import { startServeBin } from "./server.ts";
import { median, round, summarize } from "./stats.ts";

export interface ModelBench {
  /** Scenario and fixture name; the example lives in examples/<example>. */
  name: string;
  example: string;
  /** The example graph's HTTP adapter export, run before execute locally as the ingress runs it. */
  adapter: string;
  /** Deployment names of the model replicas: the example's own, the batched and the unbatched one. */
  models: { example: string; batched: string; unbatched: string };
  /** What one request carries (bodies are cycled). */
  bodies(): Uint8Array[];
  /** Throws unless `answer` (parsed JSON) is right for bodies()[i]. */
  check(answer: unknown, i: number): void;
  describe: string;
}

interface Phase {
  rps: number;
  latencyMs: number[];
  sizes: number[];
  /** CPU time the model replica spent, per request. */
  modelCpuMs: number;
}

async function post(url: string, body: Uint8Array): Promise<unknown> {
  const res = await fetch(url, { method: "POST", body: body as Uint8Array<ArrayBuffer> });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`POST ${url} answered ${res.status}: ${text.slice(0, 300)}`);
  return JSON.parse(text);
}

async function load(url: string, modelPid: number, bodies: Uint8Array[], check: ModelBench["check"], seconds: number, connections: number): Promise<Phase> {
  const cpu0 = cpuMs(modelPid);
  const latencyMs: number[] = [];
  const sizes: number[] = [];
  let next = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (performance.now() < end) {
        const i = next++ % bodies.length;
        const start = performance.now();
        const answer = (await post(url, bodies[i]!)) as { batchSize: number };
        latencyMs.push(performance.now() - start);
        check(answer, i);
        sizes.push(answer.batchSize);
      }
    }),
  );
  return { rps: latencyMs.length / ((performance.now() - t0) / 1000), latencyMs, sizes, modelCpuMs: (cpuMs(modelPid) - cpu0) / latencyMs.length };
}

const r1 = (m: Rss | null) => m && { rss: round(m.rss, 1), rssAnon: round(m.rssAnon, 1) };
const peakAnon = (a: Rss | null, b: Rss | null) => (!a ? b : !b ? a : a.rssAnon >= b.rssAnon ? a : b);

/** Runs the bodies through the example's adapter and dag.execute() in a fresh process: warm-up answers, then `runs` timings. */
async function executeLocally(ctx: Ctx, b: ModelBench, bodies: Uint8Array[], runs: number): Promise<{ ms: number[]; answers: unknown[] }> {
  const graphFile = join(ROOT, "examples", b.example, "graph.ts");
  const dir = mkdtempSync(join(tmpdir(), "sb-bench-local-"));
  try {
    const file = join(dir, "bodies.json");
    writeFileSync(file, JSON.stringify(bodies.map((x) => Buffer.from(x).toString("base64"))));
    const proc = ctx.procs.spawn(`local execute of examples/${b.example}`, [BUN, join(LIB, "local-runner.ts"), graphFile, b.adapter, String(runs), file]);
    const code = await proc.proc.exited;
    await proc.stop();
    if (code !== 0) throw new Error(`local execute of examples/${b.example} exited ${code}:\n${proc.output().slice(-2000)}`);
    return JSON.parse(proc.output().trim().split("\n").pop()!) as { ms: number[]; answers: unknown[] };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function runModelBench(b: ModelBench, ctx: Ctx, connections: number): Promise<Measured> {
  const bodies = b.bodies();
  const server = await startServeBin(ctx.procs, join(BENCH, "fixtures", `${b.name}.ts`), { timeoutMs: 60_000 });
  const pairs = ctx.quick ? 4 : 40;
  const rounds = ctx.quick ? 1 : 3;
  const seconds = ctx.quick ? 1 : 4;
  const localMs: number[] = [];
  const httpMs: number[] = [];
  const batched: Phase[] = [];
  const unbatched: Phase[] = [];
  const peak: Record<string, Rss | null> = {};
  let idle: Record<string, Rss | null> = {};
  let pids: Record<string, number[]> = {};
  try {
    pids = await server.replicaPids();
    const url = (route: string) => `${server.url}/bench/${route}`;
    const served: unknown[] = [];
    for (const body of bodies) served.push(await post(url(b.name), body)); // warm-up
    ctx.log(`${b.name}: ${pairs} sequential requests each, served and in a local process, in alternating halves`);
    await alternate(
      2,
      async () => {
        for (let i = 0; i < pairs / 2; i++) {
          const t0 = performance.now();
          await post(url(b.name), bodies[i % bodies.length]!);
          httpMs.push(performance.now() - t0);
        }
      },
      async () => {
        const local = await executeLocally(ctx, b, bodies, pairs / 2);
        if (JSON.stringify(local.answers) !== JSON.stringify(served)) throw new Error(`served and local answers differ:\n${JSON.stringify(served).slice(0, 300)}\n${JSON.stringify(local.answers).slice(0, 300)}`);
        localMs.push(...local.ms);
      },
    );
    Bun.gc(true);
    idle = Object.fromEntries(Object.values(b.models).map((m) => [m, rssOf(pids[m]![0]!)]));
    ctx.log(`${b.name}: batched vs unbatched, ${rounds} rounds of ${seconds} s at ${connections} connections`);
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        for (const m of [b.models.batched, b.models.unbatched]) peak[m] = peakAnon(peak[m] ?? null, rssOf(pids[m]![0]!));
        await Bun.sleep(100);
      }
    })();
    const on = (m: string) => pids[m]![0]!;
    await load(url("batched"), on(b.models.batched), bodies, b.check, ctx.quick ? 0.3 : 1, connections);
    await load(url("unbatched"), on(b.models.unbatched), bodies, b.check, ctx.quick ? 0.3 : 1, connections);
    await alternate(
      rounds,
      async () => void batched.push(await load(url("batched"), on(b.models.batched), bodies, b.check, seconds, connections)),
      async () => void unbatched.push(await load(url("unbatched"), on(b.models.unbatched), bodies, b.check, seconds, connections)),
    );
    sampling = false;
    await sampler;
  } finally {
    await server.stop();
  }
  const rps = (ps: Phase[]) => median(ps.map((p) => p.rps));
  const lat = (ps: Phase[]) => summarize(ps.flatMap((p) => p.latencyMs));
  const sizes = batched.flatMap((p) => p.sizes);
  const calls = sizes.reduce((n, s) => n + 1 / s, 0);
  const meanBatch = sizes.length / calls;
  const local = summarize(localMs);
  const http = summarize(httpMs);
  ctx.log(`${b.name}: served ${http.median.toFixed(1)} ms vs local ${local.median.toFixed(1)} ms; batched ${rps(batched).toFixed(1)} req/s vs unbatched ${rps(unbatched).toFixed(1)}, mean batch ${meanBatch.toFixed(2)}`);
  const exampleModel = idle[b.models.example] ?? null;
  return {
    generator: "fetch loops in the bench process",
    method: `serve-bin from source serving bench/fixtures/${b.name}.ts (examples/${b.example} with its own node_modules). ${b.describe} Latency: ${pairs} sequential requests to the example's own graph over HTTP and ${pairs} runs of its HTTP adapter + dag.execute() in a fresh Bun process (bench/lib/local-runner.ts, after one warm-up run per body), in alternating halves; served and local answers are checked equal; the figure is the difference of medians. Throughput: ${rounds} alternating rounds of ${seconds} s per side at ${connections} concurrent POSTs; the model deployments admit ${connections} calls each and run onnxruntime with intraOpNumThreads 1. RssAnon from /proc/<pid>/status.`,
    rows: [
      row({ id: `${b.name}.overhead`, figure: "served latency over dag.execute() (medians)", unit: "ms", value: http.median - local.median, note: `served median ${round(http.median, 1)} ms, local ${round(local.median, 1)} ms`, digits: 1 }),
      row({ id: `${b.name}.served-p50`, figure: "served latency, one request at a time (median)", unit: "ms", value: http.median, baseline: { label: "dag.execute() in one process (median)", value: local.median }, digits: 1 }),
      row({ id: `${b.name}.throughput`, figure: "throughput, model batched (@batch)", unit: "req/s", value: rps(batched), baseline: { label: "the same model unbatched", value: rps(unbatched) }, digits: 1 }),
      row({ id: `${b.name}.model-cpu`, figure: "model replica CPU time per request, batched", unit: "ms", value: median(batched.map((p) => p.modelCpuMs)), baseline: { label: "unbatched", value: median(unbatched.map((p) => p.modelCpuMs)) }, digits: 2 }),
      row({ id: `${b.name}.meanBatch`, figure: "mean batch size the model ran", unit: "items", value: meanBatch, digits: 2 }),
      row({ id: `${b.name}.p50-loaded`, figure: `median latency under ${connections} connections, batched`, unit: "ms", value: lat(batched).median, baseline: { label: "unbatched", value: lat(unbatched).median }, digits: 1 }),
      row({ id: `${b.name}.rss-model`, figure: "model replica RssAnon, idle after serving", unit: "MB", value: exampleModel?.rssAnon ?? null, note: `RSS with shared file pages ${round(exampleModel?.rss ?? NaN, 1)} MB`, digits: 1 }),
      row({ id: `${b.name}.rss-model-busy`, figure: "model replica RssAnon, peak under load (batched)", unit: "MB", value: peak[b.models.batched]?.rssAnon ?? null, baseline: { label: "unbatched replica peak", value: peak[b.models.unbatched]?.rssAnon ?? null }, digits: 1 }),
    ],
    series: {
      localMs: summarize(localMs),
      httpMs: summarize(httpMs),
      batched: { rps: batched.map((p) => round(p.rps, 1)), latencyMs: lat(batched), modelCpuMsPerRequest: batched.map((p) => round(p.modelCpuMs, 2)) },
      unbatched: { rps: unbatched.map((p) => round(p.rps, 1)), latencyMs: lat(unbatched), modelCpuMsPerRequest: unbatched.map((p) => round(p.modelCpuMs, 2)) },
      idleMiB: Object.fromEntries(Object.entries(idle).map(([k, v]) => [k, r1(v)])),
      peakMiB: Object.fromEntries(Object.entries(peak).map(([k, v]) => [k, r1(v)])),
    },
    notes: ["MB here is MiB.", "The load generator and local execute share the machine's 2 cores with the server."],
  };
}
