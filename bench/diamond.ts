/**
 * diamond: the REP diamond with no sleeps, served (proxy → DAGDriver → Model,
 * Model_1, ensemble) against the same functions called in-process behind one
 * Hono route; wrk at 64 connections for both.
 */
import { join } from "node:path";
import { compareHttp, medians } from "./lib/http-compare.ts";
import { FIXTURES, LIB } from "./lib/paths.ts";
import { row, type Scenario } from "./lib/scenario.ts";

export const diamond: Scenario = {
  name: "diamond",
  title: "the REP diamond with no sleeps",
  async run(ctx) {
    const c = await compareHttp(ctx, {
      target: join(FIXTURES, "diamond.ts"),
      path: "/",
      baselineScript: join(LIB, "hono-diamond.ts"),
      body: [1, 2, 3],
      expected: "8",
    });
    const s = medians(c.serveBin);
    const b = medians(c.baseline);
    return {
      generator: c.generator,
      method: `${c.serveBin.length} alternating rounds of ${c.durationS} s per side, ${c.connections} connections, POST [1, 2, 3] (answer 8). serve-bin runs 5 processes with default options (DAGDriver maxOngoingRequests 100, the others 5); the baseline is one Bun process with Hono. Figures are medians over rounds.`,
      rows: [
        row({ id: "diamond.throughput", figure: "throughput at 64 connections", unit: "req/s", value: s.rps, baseline: { label: "same functions in-process behind one Hono route", value: b.rps }, digits: 0 }),
        row({ id: "diamond.p99", figure: "p99 latency at 64 connections", unit: "ms", value: s.p99, baseline: { label: "in-process Hono p99", value: b.p99 }, digits: 2 }),
      ],
      series: { serveBin: s, baseline: b, cpuUsPerRequest: c.cpuUsPerRequest, perRound: { serveBinRps: c.serveBin.map((r) => Math.round(r.rps)), baselineRps: c.baseline.map((r) => Math.round(r.rps)), serveBinP99Ms: c.serveBin.map((r) => r.latencyMs.p99), baselineP99Ms: c.baseline.map((r) => r.latencyMs.p99) } },
      notes: s.errors || b.errors ? [`errors (non-2xx or socket): serve-bin ${s.errors}, baseline ${b.errors}`] : [],
    };
  },
};
