/**
 * ensemble10: one request fanned out to ten no-op deployments and gathered
 * (Promise.all of ten handle calls), timed in the calling replica; against
 * ten concurrent raw unix-socket ping-pongs to one echo process.
 */
import { row, type Scenario } from "./lib/scenario.ts";
import { roundSummary } from "./lib/stats.ts";
import { measureTenCalls } from "./lib/ten-calls.ts";

export const ensemble10: Scenario = {
  name: "ensemble10",
  title: "one request fanned out to ten no-op deployments",
  async run(ctx) {
    const { served: s, raw: r, http: h, httpBare: hb, wakeupsPerRequest, httpColocated: hc, wakeupsColocated, n, rounds } = await measureTenCalls(ctx, "ensemble10", (client, i) => Promise.all(Array.from({ length: 10 }, () => client.call(i))));
    return {
      method: `${n} requests, each ten concurrent handle calls from the driver replica to Leaf … Leaf_9 (ten deployments, one replica each) gathered with Promise.all, timed in the driver; baseline: ten concurrent raw msgpack ping-pongs over one unix socket to one echo process; over HTTP: the same request as sequential POSTs from the bench process (fetch, one kept-alive connection), against the same POSTs to a bare Bun.serve that echoes the JSON, and to the same graph served with its ten callees colocated (bench/fixtures/ensemble10-colocated.yaml), with each serve-bin process's voluntary context switches (sleeps, so wake-ups) counted meanwhile; ${rounds} rounds, the order of the five sides rotating.`,
      rows: [
        row({ id: "ensemble10.mean", figure: "10-way fan-out ensemble, one request, mean", unit: "ms", value: s.mean, baseline: { label: "ten concurrent raw ping-pongs, mean", value: r.mean }, target: "≤ 1 ms (Ray Serve: 71.8 ms with handles)", met: s.mean <= 1, digits: 3 }),
        row({ id: "ensemble10.p99", figure: "10-way fan-out ensemble, p99", unit: "ms", value: s.p99, baseline: { label: "ten concurrent raw ping-pongs, p99", value: r.p99 }, digits: 3 }),
        row({ id: "ensemble10.http-mean", figure: "the same, from an HTTP client (sequential POSTs), mean", unit: "ms", value: h.mean, baseline: { label: "the same client's POSTs to a bare Bun.serve, mean", value: hb.mean }, target: "≤ 1 ms", met: h.mean <= 1, digits: 3 }),
        row({ id: "ensemble10.http-median", figure: "the same, from an HTTP client, median", unit: "ms", value: h.median, baseline: { label: "bare Bun.serve, median", value: hb.median }, digits: 3 }),
        row({ id: "ensemble10.http-p99", figure: "the same, from an HTTP client, p99", unit: "ms", value: h.p99, baseline: { label: "bare Bun.serve, p99", value: hb.p99 }, digits: 3 }),
        row({ id: "ensemble10.wakeups", figure: "wake-ups per HTTP request, all serve-bin processes (voluntary context switches)", unit: "wake-ups", value: wakeupsPerRequest.total ?? null, digits: 2 }),
        row({ id: "ensemble10.http-colocated-mean", figure: "the same from an HTTP client with the ten callees colocated (colocate: true), mean", unit: "ms", value: hc.mean, baseline: { label: "bare Bun.serve, mean", value: hb.mean }, target: "≤ 1 ms", met: hc.mean <= 1, digits: 3 }),
        row({ id: "ensemble10.http-colocated-p99", figure: "the same with the callees colocated, p99", unit: "ms", value: hc.p99, baseline: { label: "bare Bun.serve, p99", value: hb.p99 }, digits: 3 }),
        row({ id: "ensemble10.wakeups-colocated", figure: "wake-ups per HTTP request with the callees colocated", unit: "wake-ups", value: wakeupsColocated.total ?? null, digits: 2 }),
      ],
      series: { ensembleMs: roundSummary(s, 4), rawTenMs: roundSummary(r, 4), httpMs: roundSummary(h, 4), bareHttpMs: roundSummary(hb, 4), colocatedHttpMs: roundSummary(hc, 4), wakeupsPerRequest, wakeupsColocated },
      notes: [],
    };
  },
};
