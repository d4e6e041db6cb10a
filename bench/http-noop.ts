/**
 * http-noop: HTTP → proxy → DAGDriver → one no-op deployment, against a bare
 * Bun.serve answering the same JSON POST; wrk at 64 connections for both.
 * Measured in the same rounds: the main process relaying (proxy.location
 * "main", the default), the DAGDriver listening itself ("ingress"), two
 * DAGDriver replicas listening, and the default with the no-op taking 100
 * calls at once instead of 5, and ingress with the DAGDriver's collector not
 * concurrent (each a config change of the same graph).
 */
import { join } from "node:path";
import { compareHttp, medians } from "./lib/http-compare.ts";
import { FIXTURES, LIB } from "./lib/paths.ts";
import { startRawFloor, type RawFloor } from "./lib/raw-floor.ts";
import { row, type Ctx, type Measured, type Scenario } from "./lib/scenario.ts";

const BODY = { id: 7, text: "hello serve-bin", tags: ["a", "b"] };

type Medians = ReturnType<typeof medians>;

/** Throughput and p99 of one more configuration of the same graph, against the bare server, with the headline's targets. */
function configRows(id: string, label: string, m: Medians, bare: Medians) {
  return [
    row({ id: `http-noop.${id}-throughput`, figure: `throughput at 64 connections, ${label}`, unit: "req/s", value: m.rps, baseline: { label: "bare Bun.serve, same JSON POST", value: bare.rps }, target: "≥ 25% of a bare Bun.serve", met: m.rps / bare.rps >= 0.25, digits: 0 }),
    row({ id: `http-noop.${id}-p99`, figure: `p99 latency at 64 connections, ${label}`, unit: "ms", value: m.p99, baseline: { label: "bare Bun.serve p99", value: bare.p99 }, target: "≤ 10 ms", met: m.p99 <= 10, digits: 2 }),
  ];
}

export const httpNoop: Scenario = {
  name: "http-noop",
  title: "HTTP → DAGDriver → one no-op deployment",
  async run(ctx) {
    // The floors of the shape, by hand: a bare Bun.serve relaying each body over a unix socket to an echo
    // process (2 processes, as proxy.location "ingress"), and to a relay in front of it (3, as the default).
    const two = await startRawFloor(ctx.procs, "chain", 1);
    const three = await startRawFloor(ctx.procs, "chain", 2).catch(async (e) => {
      await two.close();
      throw e;
    });
    try {
      return await measure(ctx, two, three);
    } finally {
      await three.close();
      await two.close();
    }
  },
};

async function measure(ctx: Ctx, two: RawFloor, three: RawFloor): Promise<Measured> {
  const c = await compareHttp(ctx, {
    target: join(FIXTURES, "noop.ts"),
    path: "/",
    baselineScript: join(LIB, "bare-server.ts"),
    others: {
      ingress: { serve: join(FIXTURES, "noop-ingress.yaml") },
      ingress2: { serve: join(FIXTURES, "noop-ingress-2.yaml") },
      concurrent: { serve: join(FIXTURES, "noop-concurrent.yaml") },
      ingressConcurrent: { serve: join(FIXTURES, "noop-ingress-concurrent.yaml") },
      ingressStw: { serve: join(FIXTURES, "noop-ingress-stw.yaml") },
      relay: { script: join(LIB, "http-floor.ts"), args: ["relay", ...two.paths], peers: two.pids },
      relay3: { script: join(LIB, "http-floor.ts"), args: ["relay", ...three.paths], peers: three.pids },
    },
    body: BODY,
    expected: JSON.stringify(BODY),
  });
  const s = medians(c.serveBin);
  const b = medians(c.baseline);
  const i = medians(c.others.ingress!);
  const i2 = medians(c.others.ingress2!);
  const k = medians(c.others.concurrent!);
  const ik = medians(c.others.ingressConcurrent!);
  const ig = medians(c.others.ingressStw!);
  const f = medians(c.others.relay!);
  const f3 = medians(c.others.relay3!);
  const share = s.rps / b.rps;
  return {
    generator: c.generator,
    method: `${c.serveBin.length} alternating rounds of ${c.durationS} s per side, ${c.connections} connections, POST of a ${JSON.stringify(BODY).length}-byte JSON body; serve-bin is 3 processes (main with the proxy, a DAGDriver replica, the no-op replica), the baseline 1; "ingress" is the same graph served with proxy.location "ingress" (bench/fixtures/noop-ingress.yaml: the DAGDriver replica takes the connections, the main process is off the data path); "ingress, 2 DAGDriver replicas" adds a second DAGDriver replica, both listening (bench/fixtures/noop-ingress-2.yaml: 4 processes, 2 taking connections, the no-op still one replica in its own process); "no-op maxOngoingRequests 100" is the default graph and proxy.location with the no-op deployment taking up to 100 calls at once instead of the default 5 (bench/fixtures/noop-concurrent.yaml: with 5, at most 5 calls per caller are on their way to the no-op at any moment, so each wake-up of the no-op carries at most 5 requests); "ingress and the no-op's maxOngoingRequests 100" combines the two (bench/fixtures/noop-ingress-concurrent.yaml); "ingress, the no-op's maxOngoingRequests 100 and the DAGDriver's collector not concurrent" adds BUN_JSC_useConcurrentGC=false to the DAGDriver's env (bench/fixtures/noop-ingress-stw.yaml); "the two-process relay" is the floor of the shape, with none of serve-bin in it (bench/lib/http-floor.ts relay: a bare Bun.serve that sends each parsed body as one msgpack frame over a unix socket to a process that echoes it, bench/lib/relay-peer.ts as the end of a line, and answers what comes back; no routing, limits, timeouts, cancellation or metrics), the floor of proxy.location "ingress" (the DAGDriver takes the connections and calls the no-op); "the three-process relay" puts a relay process between the two (bench/lib/relay-peer.ts: decodes each frame and sends it on, as the DAGDriver is between the main process and the no-op by default), the floor of the default shape; the floors' CPU per request counts their peers too; the load generator shares the same 2 cores. Figures are medians over rounds.`,
    rows: [
      row({
        id: "http-noop.throughput",
        figure: "throughput at 64 connections",
        unit: "req/s",
        value: s.rps,
        baseline: { label: "bare Bun.serve, same JSON POST", value: b.rps },
        target: "≥ 25% of a bare Bun.serve",
        met: share >= 0.25,
        digits: 0,
      }),
      row({
        id: "http-noop.p99",
        figure: "p99 latency at 64 connections",
        unit: "ms",
        value: s.p99,
        baseline: { label: "bare Bun.serve p99", value: b.p99 },
        target: "≤ 10 ms",
        met: s.p99 <= 10,
        digits: 2,
      }),
      row({ id: "http-noop.median", figure: "median latency at 64 connections", unit: "ms", value: s.median, baseline: { label: "bare Bun.serve median", value: b.median }, digits: 2 }),
      row({
        id: "http-noop.ingress-throughput",
        figure: 'throughput at 64 connections, proxy.location "ingress"',
        unit: "req/s",
        value: i.rps,
        baseline: { label: "bare Bun.serve, same JSON POST", value: b.rps },
        target: "≥ 25% of a bare Bun.serve",
        met: i.rps / b.rps >= 0.25,
        digits: 0,
      }),
      row({ id: "http-noop.ingress-vs-main", figure: 'throughput, proxy.location "ingress" against "main"', unit: "req/s", value: i.rps, baseline: { label: 'proxy.location "main" (the default)', value: s.rps }, digits: 0 }),
      row({ id: "http-noop.ingress-p99", figure: 'p99 latency at 64 connections, proxy.location "ingress"', unit: "ms", value: i.p99, baseline: { label: "bare Bun.serve p99", value: b.p99 }, target: "≤ 10 ms", met: i.p99 <= 10, digits: 2 }),
      ...configRows("ingress2", 'proxy.location "ingress", 2 DAGDriver replicas', i2, b),
      ...configRows("concurrent", "the no-op's maxOngoingRequests 100", k, b),
      ...configRows("ingress-concurrent", 'proxy.location "ingress" and the no-op\'s maxOngoingRequests 100', ik, b),
      ...configRows("ingress-stw", 'proxy.location "ingress", the no-op\'s maxOngoingRequests 100 and the DAGDriver\'s collector not concurrent (BUN_JSC_useConcurrentGC=false in its env)', ig, b),
      row({ id: "http-noop.floor-throughput", figure: 'the floor of proxy.location "ingress": a hand-written Bun.serve relaying each request to a second process over a unix socket (bench/lib/http-floor.ts relay), throughput', unit: "req/s", value: f.rps, baseline: { label: "bare Bun.serve, same JSON POST", value: b.rps }, digits: 0 }),
      row({ id: "http-noop.floor-p99", figure: "the same floor (the hand-written two-process relay), p99 latency at 64 connections", unit: "ms", value: f.p99, baseline: { label: "bare Bun.serve p99", value: b.p99 }, digits: 2 }),
      row({ id: "http-noop.floor3-throughput", figure: "the floor of the default shape: the same with a relay process between the two (three processes, as main → DAGDriver → no-op), throughput", unit: "req/s", value: f3.rps, baseline: { label: "bare Bun.serve, same JSON POST", value: b.rps }, digits: 0 }),
      row({ id: "http-noop.floor3-p99", figure: "the floor of the default shape (the hand-written three-process relay), p99 latency at 64 connections", unit: "ms", value: f3.p99, baseline: { label: "bare Bun.serve p99", value: b.p99 }, target: "≤ 10 ms", met: f3.p99 <= 10, digits: 2 }),
      row({ id: "http-noop.vs-floor3", figure: "throughput as written against the hand-written three-process relay", unit: "req/s", value: s.rps, baseline: { label: "the three-process relay", value: f3.rps }, digits: 0 }),
      row({ id: "http-noop.ingress-vs-floor", figure: 'throughput, proxy.location "ingress" against the hand-written two-process relay', unit: "req/s", value: i.rps, baseline: { label: "the two-process relay", value: f.rps }, digits: 0 }),
    ],
    series: { serveBin: s, baseline: b, ingress: i, ingress2: i2, concurrent: k, cpuUsPerRequest: c.cpuUsPerRequest, perRound: { serveBinRps: c.serveBin.map((r) => Math.round(r.rps)), baselineRps: c.baseline.map((r) => Math.round(r.rps)), serveBinP99Ms: c.serveBin.map((r) => r.latencyMs.p99), baselineP99Ms: c.baseline.map((r) => r.latencyMs.p99), ingressRps: c.others.ingress!.map((r) => Math.round(r.rps)), ingress2Rps: c.others.ingress2!.map((r) => Math.round(r.rps)), concurrentRps: c.others.concurrent!.map((r) => Math.round(r.rps)), relayRps: c.others.relay!.map((r) => Math.round(r.rps)), relay3Rps: c.others.relay3!.map((r) => Math.round(r.rps)), relay3P99Ms: c.others.relay3!.map((r) => r.latencyMs.p99), ingressConcurrentRps: c.others.ingressConcurrent!.map((r) => Math.round(r.rps)), ingressStwRps: c.others.ingressStw!.map((r) => Math.round(r.rps)) }, relay: f, relay3: f3, ingressConcurrent: ik, ingressStw: ig },
    notes: s.errors || b.errors || i.errors || i2.errors || k.errors || f.errors || ik.errors || ig.errors || f3.errors ? [`errors (non-2xx or socket): serve-bin ${s.errors}, baseline ${b.errors}, ingress ${i.errors}, ingress with 2 DAGDriver replicas ${i2.errors}, no-op maxOngoingRequests 100 ${k.errors}, two-process relay ${f.errors}, ingress with maxOngoingRequests 100 ${ik.errors}, the same with the collector not concurrent ${ig.errors}, three-process relay ${f3.errors}`] : [],
  };
}
