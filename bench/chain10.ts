/**
 * chain10: one request through ten no-op deployments in a line (each calls
 * the next through its handle), timed in the calling replica; against ten
 * raw unix-socket ping-pongs in a row (the floor of ten hops).
 */
import { join } from "node:path";
import { FIXTURES } from "./lib/paths.ts";
import { startRawPeer } from "./lib/raw-client.ts";
import { alternate, row, type Scenario } from "./lib/scenario.ts";
import { postJSON, startServeBin } from "./lib/server.ts";
import { roundSummary, summarize } from "./lib/stats.ts";

export const chain10: Scenario = {
  name: "chain10",
  title: "ten no-op deployments in a line, one request",
  async run({ quick, procs, log }) {
    const rounds = quick ? 2 : 10;
    const perRound = quick ? 50 : 200;
    const server = await startServeBin(procs, join(FIXTURES, "chain10.ts"));
    const peer = await startRawPeer(procs);
    const us: number[] = [];
    const rawUs: number[] = [];
    try {
      await postJSON(server.url, { n: 100 });
      for (let i = 0; i < 200; i++) await peer.client.call(i);
      log(`chain10: ${rounds} rounds of ${perRound} requests`);
      await alternate(
        rounds,
        async () => void us.push(...(JSON.parse(await postJSON(server.url, { n: perRound })) as number[])),
        async () => {
          for (let i = 0; i < perRound; i++) {
            const t0 = performance.now();
            for (let k = 0; k < 10; k++) await peer.client.call(i);
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
      method: `${us.length} requests, each one handle call from the driver replica into Link_9 → Link_8 → … → Link (ten deployments, one replica each, each awaiting the next), timed in the driver; baseline: ten sequential raw msgpack ping-pongs over one unix socket to an echo process; ${rounds} alternating rounds.`,
      rows: [
        row({ id: "chain10.mean", figure: "10-deployment linear chain, one request, mean", unit: "ms", value: s.mean, baseline: { label: "ten raw ping-pongs in a row, mean", value: r.mean }, target: "≤ 1 ms (Ray Serve: 46.7 ms with handles)", met: s.mean <= 1, digits: 3 }),
        row({ id: "chain10.p99", figure: "10-deployment linear chain, p99", unit: "ms", value: s.p99, baseline: { label: "ten raw ping-pongs, p99", value: r.p99 }, digits: 3 }),
      ],
      series: { chainMs: roundSummary(s, 4), rawTenMs: roundSummary(r, 4) },
      notes: [],
    };
  },
};
