/**
 * observability: what metrics (always on) and tracing (off; on at ratio 1)
 * cost on HTTP → DAGDriver → one no-op deployment. The per-call work of each
 * is timed in this process (steady, unlike throughput on a shared machine)
 * and set against the CPU a request costs across serve-bin's processes; the
 * same graph is then served twice, tracing off and tracing on at ratio 1
 * with spans going to a collector in this process, in alternating rounds.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ReplicaStats } from "../src/runtime/metrics/replica-stats.ts";
import { startCallSpan } from "../src/runtime/tracing/call-span.ts";
import { setProcessTracer } from "../src/runtime/tracing/tracer.ts";
import type { DataMessage } from "../src/runtime/channel/messages.ts";
import { CpuMeter } from "./lib/cpu.ts";
import { medians } from "./lib/http-compare.ts";
import { loadGenerator, type LoadResult } from "./lib/load.ts";
import { FIXTURES, ROOT } from "./lib/paths.ts";
import { alternate, row, type Scenario } from "./lib/scenario.ts";
import { postJSON, startServeBin, type ServeBin } from "./lib/server.ts";
import { microbench } from "./lib/stats.ts";

const BODY = { id: 7, text: "hello serve-bin", tags: ["a", "b"] };
/** Deployment calls per request on this graph: the DAGDriver's and the no-op's. */
const CALLS_PER_REQUEST = 2;

async function pidsOf(s: ServeBin): Promise<Record<string, number>> {
  const pids: Record<string, number> = { main: s.pid };
  for (const [name, ps] of Object.entries(await s.replicaPids())) ps.forEach((p, i) => (pids[`${name}#${i}`] = p));
  return pids;
}

export const observability: Scenario = {
  name: "observability",
  title: "cost of metrics and tracing on HTTP → DAGDriver → no-op",
  async run({ quick, procs, log }) {
    // Per-call work, in this process: what a replica adds to every call it serves.
    const n = quick ? 200_000 : 2_000_000;
    const stats = new ReplicaStats();
    const metricsNs = microbench(n, () => stats.done(performance.now())) * 1000;
    const call: Extract<DataMessage, { t: "call" }> = { t: "call", id: 1, m: null, a: [BODY], r: "r1" };
    setProcessTracer(null);
    const tracingOffNs = microbench(n, () => void startCallSpan("noop", call)) * 1000;

    // Served twice: tracing off, and on at ratio 1 with a collector that takes every span.
    let spans = 0;
    const collector = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      async fetch(req) {
        const body = (await req.json()) as { resourceSpans: { scopeSpans: { spans: unknown[] }[] }[] };
        for (const rs of body.resourceSpans) for (const ss of rs.scopeSpans) spans += ss.spans.length;
        return new Response("{}");
      },
    });
    const dir = mkdtempSync(join(tmpdir(), "sb-bench-obs-"));
    const traced = join(dir, "traced.json");
    writeFileSync(traced, JSON.stringify({ tracing: { otlpEndpoint: `http://127.0.0.1:${collector.port}`, sampleRatio: 1 }, applications: [{ name: "default", importPath: join(FIXTURES, "noop.ts") }] }));
    const gen = await loadGenerator(procs, log);
    const rounds = quick ? 1 : 3;
    const durationS = quick ? 1 : 4;
    const connections = 64;
    const body = JSON.stringify(BODY);
    const off = await startServeBin(procs, join(FIXTURES, "noop.ts"));
    const on = await startServeBin(procs, traced, { args: ["--app-dir", ROOT] });
    try {
      for (const s of [off, on]) {
        const answer = await postJSON(s.url, BODY);
        if (answer.trim() !== body) throw new Error(`${s.url} answered ${answer.slice(0, 200)}; expected ${body}`);
        await gen.run({ url: s.url, body, connections, durationS: 1 });
      }
      const results: { off: LoadResult[]; on: LoadResult[] } = { off: [], on: [] };
      const cpu = { off: new CpuMeter(await pidsOf(off)), on: new CpuMeter(await pidsOf(on)) };
      log(`${rounds} alternating rounds of ${durationS} s at ${connections} connections with ${gen.name}, tracing off and on`);
      await alternate(
        rounds,
        async () => void results.off.push(await cpu.off.measure(() => gen.run({ url: off.url, body, connections, durationS }))),
        async () => void results.on.push(await cpu.on.measure(() => gen.run({ url: on.url, body, connections, durationS }))),
      );
      const m = { off: medians(results.off), on: medians(results.on) };
      const cpuUs = { off: cpu.off.perUnitUs(m.off.requests), on: cpu.on.perUnitUs(m.on.requests) };
      const perRequestNs = cpuUs.off.total! * 1000;
      const metricsShare = (metricsNs * CALLS_PER_REQUEST) / perRequestNs;
      const tracingOffShare = (tracingOffNs * CALLS_PER_REQUEST) / perRequestNs;
      return {
        generator: gen.name,
        method: `Per-call work timed in-process over ${n.toLocaleString("en")} iterations, times ${CALLS_PER_REQUEST} calls per request, against the CPU a request costs across serve-bin's 3 processes (tracing off). Then ${rounds} alternating rounds of ${durationS} s per side, ${connections} connections: the same graph served with tracing off and with tracing on at ratio 1 (spans to a collector in the bench process, whose CPU is not counted). Figures are medians over rounds.`,
        rows: [
          row({ id: "observability.metrics", figure: "metrics (always on): per-call work, share of a request's CPU", unit: "%", value: metricsShare * 100, note: `${metricsNs.toFixed(0)} ns per call`, digits: 3 }),
          row({
            id: "observability.tracing-off",
            figure: "tracing off: per-call work, share of a request's CPU",
            unit: "%",
            value: tracingOffShare * 100,
            target: "≤ 1%",
            met: tracingOffShare <= 0.01,
            note: `${tracingOffNs.toFixed(1)} ns per call`,
            digits: 3,
          }),
          row({ id: "observability.tracing-on.throughput", figure: "throughput, tracing on at ratio 1", unit: "req/s", value: m.on.rps, baseline: { label: "tracing off, same run", value: m.off.rps }, digits: 0 }),
          row({ id: "observability.tracing-on.cpu", figure: "CPU per request, tracing on at ratio 1", unit: "µs", value: cpuUs.on.total!, baseline: { label: "tracing off, same run", value: cpuUs.off.total! }, digits: 1 }),
        ],
        series: { metricsNsPerCall: metricsNs, tracingOffNsPerCall: tracingOffNs, off: m.off, on: m.on, cpuUsPerRequest: cpuUs, spansReceived: spans },
        notes: m.off.errors || m.on.errors ? [`errors (non-2xx or socket): off ${m.off.errors}, on ${m.on.errors}`] : [],
      };
    } finally {
      await off.stop();
      await on.stop();
      await collector.stop(true);
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
