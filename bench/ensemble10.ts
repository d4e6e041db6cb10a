/**
 * ensemble10: one request fanned out to ten no-op deployments and gathered
 * (Promise.all of ten handle calls), timed in the calling replica; against
 * ten concurrent raw unix-socket ping-pongs to one echo process, and against
 * ten distinct raw echo processes called at once (the floor of the fan-out).
 */
import type { Scenario } from "./lib/scenario.ts";
import { measureTenCalls, tenCallRows, tenCallSeries } from "./lib/ten-calls.ts";

export const ensemble10: Scenario = {
  name: "ensemble10",
  title: "one request fanned out to ten no-op deployments",
  async run(ctx) {
    const t = await measureTenCalls(ctx, "ensemble10", (client, i) => Promise.all(Array.from({ length: 10 }, () => client.call(i))), "fanout");
    return {
      method: `${t.n} requests, each ten concurrent handle calls from the driver replica to Leaf … Leaf_9 (ten deployments, one replica each) gathered with Promise.all, timed in the driver; baselines: ten concurrent raw msgpack ping-pongs over one unix socket to one echo process, and the floor of the graph's shape: ten distinct raw echo processes called at once from the bench process (bench/lib/relay-peer.ts). Over HTTP: the same request as sequential POSTs from the bench process (fetch, one kept-alive connection), against the same POSTs to a bare Bun.serve that echoes the JSON, to a bare Bun.serve that makes the same ten calls through the ten raw processes (bench/lib/http-floor.ts: the floor over HTTP), to the same graph with proxy.location ingress (bench/fixtures/ensemble10-ingress.yaml) and with its ten callees colocated (bench/fixtures/ensemble10-colocated.yaml), with each process's voluntary context switches (wake-ups) and CPU time counted meanwhile, serve-bin's and the two HTTP floors' alike; ${t.rounds} rounds, the order of the eight sides rotating.`,
      rows: tenCallRows("ensemble10", t, { figure: "10-way fan-out ensemble", raw: "ten concurrent raw ping-pongs", floor: "ten echo processes at once", ray: "71.8 ms" }),
      series: tenCallSeries(t, "ensembleMs"),
      notes: [],
    };
  },
};
