/**
 * tcp-hop: a handle call to a no-op replica over an authenticated TCP link
 * (handle.remote → RemoteInvoker → router → TCP → ReplicaServer → reply),
 * beside a raw TCP msgpack ping-pong with the same peer placement, in the
 * same run: first on 127.0.0.1, then across two network namespaces joined by
 * a veth pair (the peers run in a namespace this scenario makes and removes).
 * Without permission for `ip netns`, the second part is skipped loudly.
 */
import { join } from "node:path";
import { createHandle } from "../src/api/handle.ts";
import { ClusterToken } from "../src/config/cluster-token.ts";
import { RemoteInvoker } from "../src/runtime/remote-invoker.ts";
import { makeNetnsPair, type NetnsPair } from "./lib/netns.ts";
import { BUN, ROOT } from "./lib/paths.ts";
import type { ProcessSet } from "./lib/procs.ts";
import { startRawPeer } from "./lib/raw-client.ts";
import { alternate, row, timeCalls, type Scenario } from "./lib/scenario.ts";
import { median, round, roundSummary, summarize, type Summary } from "./lib/stats.ts";
import type { Row } from "./lib/results.ts";

const PEER = join(ROOT, "test/fixtures/tcp-peer.ts");
const SECRET = crypto.randomUUID() + crypto.randomUUID();

interface Measured {
  hop: Summary;
  raw: Summary;
  /** GB/s of a 16 MiB Float32Array echoed through the handle (counting both directions), median of the trips. */
  bulkGBps: number;
}

const BULK = new Float32Array(4 << 20).map((_, i) => i % 997);

/** Handle calls and raw round trips to peers listening on `host`, alternating rounds. */
async function measure(procs: ProcessSet, host: string, wrap: string[], rounds: number, perRound: number, log: (l: string) => void): Promise<Measured> {
  const peer = procs.spawn(`tcp peer on ${host}`, [...wrap, BUN, PEER, "Noop", `tcp://${host}:0`], { env: { SERVE_BIN_CLUSTER_TOKEN: SECRET, SERVE_BIN_CLUSTER_TOKEN_FILE: "" } });
  const address = (await peer.waitFor(/tcp peer ready (\S+)/, 15_000))[1]!;
  const raw = await startRawPeer(procs, host, wrap);
  const invoker = new RemoteInvoker({}, { token: ClusterToken.from(SECRET) });
  invoker.update({ version: 1, deployments: { Noop: { replicas: [{ id: "Noop#0", socket: address }], maxOngoingRequests: 1000, maxQueuedRequests: -1 } } });
  const handle = createHandle<(x: number) => number>({ name: "Noop", kind: "function", methods: [] }, invoker);
  const hopUs: number[] = [];
  const rawUs: number[] = [];
  const bulkGBps: number[] = [];
  try {
    for (let i = 0; i < 500; i++) await handle.remote(i); // connect, authenticate, warm up
    for (let i = 0; i < 500; i++) await raw.client.call(i);
    log(`tcp-hop: ${host}: ${rounds} rounds of ${perRound} calls, alternating with the raw ping-pong`);
    await alternate(
      rounds,
      () => timeCalls(perRound, async (i) => await handle.remote(i), hopUs),
      () => timeCalls(perRound, (i) => raw.client.call(i), rawUs),
    );
    // Large values: chunk frames through the same link (no shared memory across TCP).
    const echo = createHandle<(x: Float32Array) => Float32Array>({ name: "Noop", kind: "function", methods: [] }, invoker);
    for (let i = 0; i < (rounds > 2 ? 8 : 2); i++) {
      const t0 = performance.now();
      const back = await echo.remote(BULK);
      if (back.length !== BULK.length) throw new Error(`a 16 MiB echo came back with ${back.length} elements`);
      bulkGBps.push((2 * BULK.byteLength) / ((performance.now() - t0) / 1000) / 1e9);
    }
  } finally {
    invoker.close();
    await raw.close();
    await peer.stop();
  }
  return { hop: summarize(hopUs), raw: summarize(rawUs), bulkGBps: median(bulkGBps) };
}

function rows(id: string, where: string, m: Measured | null, note?: string): Row[] {
  const ok = m ? m.hop.median <= 1.5 * m.raw.median && m.hop.median <= m.raw.median + 40 : null;
  return [
    row({
      id: `${id}.median`,
      figure: `handle call over TCP to a no-op replica, ${where}, median`,
      unit: "µs",
      value: m?.hop.median ?? null,
      baseline: { label: `raw TCP msgpack ping-pong, ${where}, median`, value: m?.raw.median ?? null },
      target: "≤ 1.5× raw and ≤ raw + 40 µs",
      met: ok,
      digits: 1,
      ...(note ? { note } : {}),
    }),
    row({ id: `${id}.p99`, figure: `handle call over TCP, ${where}, p99`, unit: "µs", value: m?.hop.p99 ?? null, baseline: { label: "raw ping-pong, p99", value: m?.raw.p99 ?? null }, digits: 1 }),
    row({ id: `${id}.bulk`, figure: `16 MiB Float32Array echoed through a handle over TCP (chunk frames), ${where}, both directions`, unit: "GB/s", value: m?.bulkGBps ?? null, digits: 2 }),
  ];
}

export const tcpHop: Scenario = {
  name: "tcp-hop",
  title: "handle call to a no-op replica over TCP, same host and across network namespaces",
  async run({ quick, procs, log }) {
    const rounds = quick ? 2 : 12;
    const perRound = quick ? 300 : 2000;
    const notes: string[] = [];
    const local = await measure(procs, "127.0.0.1", [], rounds, perRound, log);

    let netns: Measured | null = null;
    let skipped: string | undefined;
    const pair: NetnsPair | string = makeNetnsPair();
    if (typeof pair === "string") {
      skipped = `SKIPPED across network namespaces: ${pair} (needs root or CAP_NET_ADMIN and iproute2)`;
      log(`tcp-hop: ${skipped}`);
      notes.push(skipped);
    } else {
      try {
        log(`tcp-hop: namespace ${pair.ns}, veth ${pair.rootIp} ↔ ${pair.nsIp}`);
        netns = await measure(procs, pair.nsIp, pair.wrap, rounds, perRound, log);
      } finally {
        pair.remove();
      }
    }
    return {
      method: `Sequential calls from the bench process: handle.remote(i) on a function-deployment handle over a RemoteInvoker whose routing table names one replica at tcp://host:port (a ReplicaServer in its own Bun process, the cluster-token handshake done during warm-up, TCP_NODELAY), against a raw ping-pong (Bun.connect ↔ Bun.listen over TCP with Nagle off, msgpack frames, no runtime) to an echo process placed the same way; ${rounds} alternating rounds of ${perRound}. "Across namespaces": both peers run under \`ip netns exec\` in a namespace made for the run, reached over a veth pair with a private /30; the bench process stays in the root namespace.`,
      rows: [...rows("tcp-hop.loopback", "127.0.0.1", local), ...rows("tcp-hop.netns", "across network namespaces (veth)", netns, skipped)],
      series: {
        loopback: { hopUs: roundSummary(local.hop, 2), rawUs: roundSummary(local.raw, 2), bulkGBps: round(local.bulkGBps, 3) },
        ...(netns ? { netns: { hopUs: roundSummary(netns.hop, 2), rawUs: roundSummary(netns.raw, 2), bulkGBps: round(netns.bulkGBps, 3) } } : {}),
      },
      notes,
    };
  },
};
