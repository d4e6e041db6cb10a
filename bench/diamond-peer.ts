/**
 * diamond-peer: the REP diamond with no sleeps under wrk at 64 connections,
 * served in the same rounds by serve-bin (proxy → DAGDriver → Model, Model_1,
 * ensemble), by the server a TypeScript team would write by hand (Hono + a
 * piscina pool of 2 worker threads), in-process behind one Hono route (the
 * no-process floor), by serve-bin with the three functions colocated, and
 * by serve-bin with proxy.location "ingress" (alone, and colocated with two
 * DAGDriver replicas, as the peer has two worker threads).
 */
import { join } from "node:path";
import { startDiamondPeers, type DiamondPeers } from "./lib/diamond-floor.ts";
import { compareHttp, medians } from "./lib/http-compare.ts";
import { FIXTURES, LIB } from "./lib/paths.ts";
import { row, type Ctx, type Measured, type Scenario } from "./lib/scenario.ts";

export const diamondPeer: Scenario = {
  name: "diamond-peer",
  title: "the REP diamond with no sleeps, beside Hono + piscina and in-process Hono",
  async run(ctx) {
    const peers = await startDiamondPeers(ctx.procs);
    try {
      return await measure(ctx, peers);
    } finally {
      await peers.close();
    }
  },
};

async function measure(ctx: Ctx, peers: DiamondPeers): Promise<Measured> {
  const c = await compareHttp(ctx, {
    target: join(FIXTURES, "diamond.ts"),
    path: "/",
    baselineScript: join(LIB, "hono-diamond.ts"),
    others: {
      piscina: { script: join(LIB, "hono-piscina.ts") },
      colocated: { serve: join(FIXTURES, "diamond-colocated.yaml") },
      ingress: { serve: join(FIXTURES, "diamond-ingress.yaml") },
      colocatedIngress: { serve: join(FIXTURES, "diamond-colocated-ingress.yaml") },
      floor4: { script: join(LIB, "http-floor.ts"), args: ["diamond", ...peers.functions], peers: peers.pids.functions },
      floor5: { script: join(LIB, "http-floor.ts"), args: ["relay", peers.driver], peers: peers.pids.all },
    },
    body: [1, 2, 3],
    expected: "8",
  });
  const s = medians(c.serveBin);
  const b = medians(c.baseline);
  const p = medians(c.others.piscina!);
  const k = medians(c.others.colocated!);
  const i = medians(c.others.ingress!);
  const ki = medians(c.others.colocatedIngress!);
  const f4 = medians(c.others.floor4!);
  const f5 = medians(c.others.floor5!);
  const perRound = (rs: typeof c.serveBin) => ({ rps: rs.map((r) => Math.round(r.rps)), p99Ms: rs.map((r) => r.latencyMs.p99) });
  const errors = s.errors + b.errors + p.errors + k.errors + i.errors + ki.errors + f4.errors + f5.errors;
  return {
    generator: c.generator,
    method: `${c.serveBin.length} rounds of ${c.durationS} s per side (the order rotates each round), ${c.connections} connections, POST [1, 2, 3] (answer 8). serve-bin runs 5 processes with default options (DAGDriver maxOngoingRequests 100, the others 5); the hand-written peer is one Bun process with Hono and a piscina pool of 2 worker threads, one task per function (both models at once, then the ensemble); the floor is one Bun process with Hono calling the functions in-process; "colocated" is serve-bin serving the same graph with bench/fixtures/diamond-colocated.yaml (Model, Model_1 and ensemble colocate: true, so 2 processes: main and the DAGDriver); "ingress" is the default graph with proxy.location "ingress" (bench/fixtures/diamond-ingress.yaml: the DAGDriver replica takes the connections itself, the main process is off the data path); "colocated + ingress" adds colocate to that and runs 2 DAGDriver replicas, both listening (bench/fixtures/diamond-colocated-ingress.yaml: 3 processes, 2 of them serving, as the peer's 2 worker threads). The floors of serve-bin's process shapes, with none of serve-bin in them (bench/lib/diamond-floor.ts): each function in its own raw process answering msgpack frames on a unix socket; "the 4-process floor" is a bare Bun.serve running the diamond over them (the shape of proxy.location "ingress"), "the 5-process floor" a bare Bun.serve relaying each request to a raw driver process that runs the diamond over them (the default shape); their CPU per request counts their peers. Figures are medians over rounds.`,
    rows: [
      row({ id: "diamond-peer.vs-piscina", figure: "throughput at 64 connections, against Hono + piscina (2 threads)", unit: "req/s", value: s.rps, baseline: { label: "Hono + piscina, 2 worker threads, same functions", value: p.rps }, target: "≥ 1.5× Hono + piscina", met: s.rps >= 1.5 * p.rps, digits: 0 }),
      row({ id: "diamond-peer.vs-inprocess", figure: "throughput at 64 connections, against the in-process floor", unit: "req/s", value: s.rps, baseline: { label: "same functions in-process behind one Hono route", value: b.rps }, target: "≥ 20% of in-process Hono", met: s.rps >= 0.2 * b.rps, digits: 0 }),
      row({ id: "diamond-peer.p99", figure: "p99 latency at 64 connections", unit: "ms", value: s.p99, baseline: { label: "Hono + piscina p99", value: p.p99 }, digits: 2 }),
      row({ id: "diamond-peer.colocated", figure: "throughput at 64 connections, the same graph with Model, Model_1 and ensemble colocated (colocate: true)", unit: "req/s", value: k.rps, baseline: { label: "Hono + piscina", value: p.rps }, digits: 0 }),
      row({ id: "diamond-peer.colocated-vs-inprocess", figure: "the same, colocated, against the in-process floor", unit: "req/s", value: k.rps, baseline: { label: "in-process Hono", value: b.rps }, digits: 0 }),
      row({ id: "diamond-peer.colocated-p99", figure: "p99 latency at 64 connections, colocated", unit: "ms", value: k.p99, baseline: { label: "Hono + piscina p99", value: p.p99 }, digits: 2 }),
      row({ id: "diamond-peer.ingress", figure: 'throughput at 64 connections, proxy.location "ingress"', unit: "req/s", value: i.rps, baseline: { label: "Hono + piscina", value: p.rps }, digits: 0 }),
      row({ id: "diamond-peer.ingress-vs-main", figure: 'throughput, proxy.location "ingress" against "main"', unit: "req/s", value: i.rps, baseline: { label: 'the same graph, proxy.location "main"', value: s.rps }, digits: 0 }),
      row({ id: "diamond-peer.colocated-ingress", figure: 'throughput at 64 connections, colocated, proxy.location "ingress", 2 DAGDriver replicas', unit: "req/s", value: ki.rps, baseline: { label: "Hono + piscina", value: p.rps }, target: "≥ 1.5× Hono + piscina", met: ki.rps >= 1.5 * p.rps, digits: 0 }),
      row({ id: "diamond-peer.colocated-ingress-vs-inprocess", figure: "the same, colocated + ingress, against the in-process floor", unit: "req/s", value: ki.rps, baseline: { label: "in-process Hono", value: b.rps }, target: "≥ 20% of in-process Hono", met: ki.rps >= 0.2 * b.rps, digits: 0 }),
      row({ id: "diamond-peer.colocated-ingress-p99", figure: "p99 latency at 64 connections, colocated + ingress", unit: "ms", value: ki.p99, baseline: { label: "Hono + piscina p99", value: p.p99 }, digits: 2 }),
      row({ id: "diamond-peer.floor5", figure: "the floor of the default shape (5 hand-written raw processes: HTTP relay, driver, three functions), throughput", unit: "req/s", value: f5.rps, baseline: { label: "Hono + piscina", value: p.rps }, target: "≥ 1.5× Hono + piscina", met: f5.rps >= 1.5 * p.rps, digits: 0 }),
      row({ id: "diamond-peer.vs-floor5", figure: "throughput as written against the floor of its shape (5 raw processes)", unit: "req/s", value: s.rps, baseline: { label: "the 5-process floor", value: f5.rps }, digits: 0 }),
      row({ id: "diamond-peer.floor4", figure: 'the floor of proxy.location "ingress" (4 hand-written raw processes: HTTP with the driver, three functions), throughput', unit: "req/s", value: f4.rps, baseline: { label: "Hono + piscina", value: p.rps }, target: "≥ 1.5× Hono + piscina", met: f4.rps >= 1.5 * p.rps, digits: 0 }),
      row({ id: "diamond-peer.ingress-vs-floor4", figure: 'throughput, proxy.location "ingress" against the floor of its shape (4 raw processes)', unit: "req/s", value: i.rps, baseline: { label: "the 4-process floor", value: f4.rps }, digits: 0 }),
      row({ id: "diamond-peer.inprocess-p99", figure: "p99 latency at 64 connections, in-process Hono", unit: "ms", value: b.p99, digits: 2 }),
    ],
    series: {
      serveBin: s,
      piscina: p,
      inProcess: b,
      colocated: k,
      ingress: i,
      colocatedIngress: ki,
      cpuUsPerRequest: c.cpuUsPerRequest,
      perRound: { serveBin: perRound(c.serveBin), piscina: perRound(c.others.piscina!), inProcess: perRound(c.baseline), colocated: perRound(c.others.colocated!), ingress: perRound(c.others.ingress!), colocatedIngress: perRound(c.others.colocatedIngress!), floor4: perRound(c.others.floor4!), floor5: perRound(c.others.floor5!) },
      floor4: f4,
      floor5: f5,
    },
    notes: errors ? [`errors (non-2xx or socket): serve-bin ${s.errors}, piscina ${p.errors}, in-process ${b.errors}, colocated ${k.errors}, ingress ${i.errors}, colocated + ingress ${ki.errors}, 4-process floor ${f4.errors}, 5-process floor ${f5.errors}`] : [],
  };
}
