/**
 * batch: throughput of one vectorised model served batched (`@batch`) against
 * the same model unbatched, over HTTP, with the batch sizes the batched one
 * actually ran (every answer says the size of the batch it was in).
 *
 * The model stands in for an accelerator: its calls run one at a time, and a
 * call costs a fixed overhead plus a small cost per item. The costs are
 * sleeps, so the figure measures serve-bin's batching, not how two shared
 * cores split CPU between the model and the load generator.
 *
 * This file is also the graph module the server runs (`bench/batch.ts:graph`),
 * so it imports nothing heavy at the top.
 */
import { batch, DAGDriver, deployment, InputNode } from "serve-bin";
import { alternate, row, type Ctx, type Scenario } from "./lib/scenario.ts";
import { median, summarize } from "./lib/stats.ts";

/** Cost of one model call, in ms: a fixed overhead plus a little per item. */
export const MODEL_COST = Object.freeze({ overheadMs: 10, perItemMs: 0.25 });
const MAX_BATCH_SIZE = 32;
const CONNECTIONS = 64;

/** One device: calls run one after another, as on a GPU or a single-threaded runtime. */
function device(overheadMs: number, perItemMs: number): (items: number) => Promise<void> {
  let tail: Promise<void> = Promise.resolve();
  return (items) => {
    const run = tail.then(() => Bun.sleep(overheadMs + perItemMs * items));
    tail = run;
    return run;
  };
}

const run = device(MODEL_COST.overheadMs, MODEL_COST.perItemMs);

class BatchedModel {
  @batch({ maxBatchSize: MAX_BATCH_SIZE, batchWaitTimeoutS: 0.002 })
  async predict(xs: number[]) {
    await run(xs.length);
    return xs.map((x) => ({ y: x * 2, batchSize: xs.length }));
  }
}

class UnbatchedModel {
  async predict(x: number) {
    await run(1);
    return { y: x * 2, batchSize: 1 };
  }
}

// Both admit as many calls as the load sends, so only batching differs.
const input = new InputNode();
export const graph = DAGDriver.options({ routePrefix: "/bench" }).bind({
  "/batched": deployment(BatchedModel, { maxOngoingRequests: CONNECTIONS }).bind().predict.bind(input),
  "/unbatched": deployment(UnbatchedModel, { maxOngoingRequests: CONNECTIONS }).bind().predict.bind(input),
});

interface Phase {
  rps: number;
  latencyMs: number[];
  /** The batch size each answer reported. */
  sizes: number[];
}

/** POSTs from `connections` loops for `seconds`; checks every caller got its own item's result. */
async function phase(url: string, seconds: number, connections: number): Promise<Phase> {
  const latencyMs: number[] = [];
  const sizes: number[] = [];
  let next = 0;
  const problems: string[] = [];
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (performance.now() < end) {
        const x = next++;
        const start = performance.now();
        const res = await fetch(url, { method: "POST", body: JSON.stringify(x), headers: { "content-type": "application/json" } });
        const text = await res.text();
        latencyMs.push(performance.now() - start);
        const body = res.status === 200 ? (JSON.parse(text) as { y: number; batchSize: number }) : null;
        if (body?.y !== x * 2) problems.push(`${res.status} ${text.slice(0, 200)}`);
        else sizes.push(body.batchSize);
      }
    }),
  );
  if (problems.length) throw new Error(`${problems.length} of ${latencyMs.length} requests to ${url} failed or got another caller's result; first: ${problems[0]}`);
  return { rps: latencyMs.length / ((performance.now() - t0) / 1000), latencyMs, sizes };
}

/** Model calls by batch size: a batch of n answers n callers. */
function callsBySize(sizes: number[]): Record<number, number> {
  const callers: Record<number, number> = {};
  for (const s of sizes) callers[s] = (callers[s] ?? 0) + 1;
  return Object.fromEntries(Object.entries(callers).map(([s, n]) => [s, Math.round(n / Number(s))]));
}

export const batching: Scenario = {
  name: "batch",
  title: "a vectorised model served with @batch against the same model unbatched",
  async run(ctx: Ctx) {
    const { startServeBin } = await import("./lib/server.ts");
    const server = await startServeBin(ctx.procs, `${import.meta.path}:graph`);
    const seconds = ctx.quick ? 0.5 : 3;
    const rounds = ctx.quick ? 1 : 3;
    const batched: Phase[] = [];
    const unbatched: Phase[] = [];
    try {
      const url = (route: string) => `${server.url}/bench/${route}`;
      await phase(url("batched"), 0.3, CONNECTIONS);
      await phase(url("unbatched"), 0.3, CONNECTIONS);
      await alternate(
        rounds,
        async () => void batched.push(await phase(url("batched"), seconds, CONNECTIONS)),
        async () => void unbatched.push(await phase(url("unbatched"), seconds, CONNECTIONS)),
      );
    } finally {
      await server.stop();
    }
    const rps = (ps: Phase[]) => median(ps.map((p) => p.rps));
    const sizes = batched.flatMap((p) => p.sizes);
    const calls = callsBySize(sizes);
    const totalCalls = Object.values(calls).reduce((a, b) => a + b, 0);
    const meanBatch = sizes.length / totalCalls;
    const lat = (ps: Phase[]) => summarize(ps.flatMap((p) => p.latencyMs));
    ctx.log(`batched ${rps(batched).toFixed(0)} req/s, unbatched ${rps(unbatched).toFixed(0)} req/s, mean batch ${meanBatch.toFixed(2)}`);
    return {
      generator: "fetch loops in the bench process (each answer carries its batch size)",
      method: `${rounds} alternating rounds of ${seconds} s per side, ${CONNECTIONS} concurrent POSTs through proxy → DAGDriver → model. The model runs one call at a time costing ${MODEL_COST.overheadMs} ms + ${MODEL_COST.perItemMs} ms per item; batched: @batch({ maxBatchSize: ${MAX_BATCH_SIZE}, batchWaitTimeoutS: 0.002 }). Both models admit ${CONNECTIONS} calls at once. Throughput is the median over rounds.`,
      rows: [
        row({ id: "batch.throughput", figure: "throughput, batched", unit: "req/s", value: rps(batched), baseline: { label: "the same model unbatched", value: rps(unbatched) }, digits: 0 }),
        row({ id: "batch.meanSize", figure: "mean batch size the model ran", unit: "items", value: meanBatch, digits: 2, note: `of at most ${MAX_BATCH_SIZE}; model calls by size: ${Object.entries(calls).map(([s, n]) => `${s}×${n}`).join(" ")}` }),
        row({ id: "batch.p50", figure: "median latency, batched", unit: "ms", value: lat(batched).median, baseline: { label: "unbatched median", value: lat(unbatched).median }, digits: 1 }),
      ],
      series: { batched: { rps: batched.map((p) => Math.round(p.rps)), latencyMs: lat(batched), callsBySize: calls }, unbatched: { rps: unbatched.map((p) => Math.round(p.rps)), latencyMs: lat(unbatched) } },
      notes: [],
    };
  },
};
