/**
 * ensemble10: one request fanned out to ten no-op deployments and gathered
 * (Promise.all of ten handle calls), timed in the calling replica; against
 * ten concurrent raw unix-socket ping-pongs to one echo process.
 */
import { join } from "node:path";
import { FIXTURES } from "./lib/paths.ts";
import { startRawPeer } from "./lib/raw-client.ts";
import { alternate, row, type Scenario } from "./lib/scenario.ts";
import { postJSON, startServeBin } from "./lib/server.ts";
import { roundSummary, summarize } from "./lib/stats.ts";

export const ensemble10: Scenario = {
  name: "ensemble10",
  title: "one request fanned out to ten no-op deployments",
  async run({ quick, procs, log }) {
    const rounds = quick ? 2 : 10;
    const perRound = quick ? 50 : 200;
    const server = await startServeBin(procs, join(FIXTURES, "ensemble10.ts"));
    const peer = await startRawPeer(procs);
    const us: number[] = [];
    const rawUs: number[] = [];
    try {
      await postJSON(server.url, { n: 100 });
      for (let i = 0; i < 200; i++) await peer.client.call(i);
      log(`ensemble10: ${rounds} rounds of ${perRound} requests`);
      await alternate(
        rounds,
        async () => void us.push(...(JSON.parse(await postJSON(server.url, { n: perRound })) as number[])),
        async () => {
          for (let i = 0; i < perRound; i++) {
            const t0 = performance.now();
            await Promise.all(Array.from({ length: 10 }, () => peer.client.call(i)));
            rawUs.push((performance.now() - t0) * 1000);
          }
        },
      );
    } finally {
      await peer.close();
      await server.stop();
    }
    const s = summarize(us.map((v) => v / 1000));
    const r = summarize(rawUs.map((v) => v / 1000));
    return {
      method: `${us.length} requests, each ten concurrent handle calls from the driver replica to Leaf … Leaf_9 (ten deployments, one replica each) gathered with Promise.all, timed in the driver; baseline: ten concurrent raw msgpack ping-pongs over one unix socket to one echo process; ${rounds} alternating rounds.`,
      rows: [
        row({ id: "ensemble10.mean", figure: "10-way fan-out ensemble, one request, mean", unit: "ms", value: s.mean, baseline: { label: "ten concurrent raw ping-pongs, mean", value: r.mean }, target: "≤ 1 ms (Ray Serve: 71.8 ms with handles)", met: s.mean <= 1, digits: 3 }),
        row({ id: "ensemble10.p99", figure: "10-way fan-out ensemble, p99", unit: "ms", value: s.p99, baseline: { label: "ten concurrent raw ping-pongs, p99", value: r.p99 }, digits: 3 }),
      ],
      series: { ensembleMs: roundSummary(s, 4), rawTenMs: roundSummary(r, 4) },
      notes: [],
    };
  },
};
