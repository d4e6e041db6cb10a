/**
 * hop: a handle call to a no-op replica, timed inside the calling replica (a
 * RemoteInvoker, as every graph uses), against a raw unix-socket ping-pong
 * with msgpack frames between two Bun processes (the floor). Also times, in
 * this process, what the codec alone costs per round trip.
 */
import { decode as rawDecode, encode as rawEncode } from "@msgpack/msgpack";
import { join } from "node:path";
import { decode, encode } from "../src/wire/codec.ts";
import { frame, FrameDecoder } from "../src/runtime/channel/frame.ts";
import { FIXTURES } from "./lib/paths.ts";
import { startRawPeer } from "./lib/raw-client.ts";
import { alternate, row, timeCalls, type Scenario } from "./lib/scenario.ts";
import { postJSON, startServeBin } from "./lib/server.ts";
import { microbench, round, roundSummary, summarize } from "./lib/stats.ts";

export const hop: Scenario = {
  name: "hop",
  title: "handle call to a no-op replica",
  async run({ quick, procs, log }) {
    const rounds = quick ? 2 : 16;
    const perRound = quick ? 300 : 2000;
    const server = await startServeBin(procs, join(FIXTURES, "hop.ts"));
    const peer = await startRawPeer(procs);
    const hopUs: number[] = [];
    const rawUs: number[] = [];
    try {
      await postJSON(server.url, { n: 500 }); // connect and warm up
      for (let i = 0; i < 500; i++) await peer.client.call(i);
      log(`hop: ${rounds} rounds of ${perRound} calls, alternating with the raw ping-pong`);
      await alternate(
        rounds,
        async () => void hopUs.push(...(JSON.parse(await postJSON(server.url, { n: perRound })) as number[])),
        () => timeCalls(perRound, (i) => peer.client.call(i), rawUs),
      );
    } finally {
      await peer.close();
      await server.stop();
    }

    // Where a hop's time can go, measured in this process: the codec and framing of one call and its reply.
    const call = { t: "call", id: 12345, m: null, a: [42], r: crypto.randomUUID() };
    const ok = { t: "ok", id: 12345, v: 42 };
    const n = quick ? 20_000 : 200_000;
    const fd = new FrameDecoder();
    const codecUs = microbench(n, () => {
      for (const b of fd.push(frame(encode(call)))) decode(b);
      for (const b of fd.push(frame(encode(ok)))) decode(b);
    });
    const rawCodecUs = microbench(n, () => {
      rawDecode(rawEncode(call));
      rawDecode(rawEncode(ok));
    });

    const h = summarize(hopUs);
    const r = summarize(rawUs);
    const ratio = h.median / r.median;
    return {
      method: `${hopUs.length} sequential handle calls (handle.remote → router → unix socket → replica → reply), timed with performance.now() inside the calling replica; ${rawUs.length} raw round trips (Bun.connect ↔ Bun.listen, msgpack frames, one write per message) from the bench process to an echo process; ${rounds} alternating rounds.`,
      rows: [
        row({
          id: "hop.median",
          figure: "handle call to a no-op replica, median",
          unit: "µs",
          value: h.median,
          baseline: { label: "raw unix-socket ping-pong, median", value: r.median },
          target: "≤ 60 µs, and ≤ 3× the raw ping-pong",
          met: h.median <= 60 && ratio <= 3,
          digits: 1,
        }),
        row({ id: "hop.p99", figure: "handle call to a no-op replica, p99", unit: "µs", value: h.p99, baseline: { label: "raw ping-pong, p99", value: r.p99 }, digits: 1 }),
        row({
          id: "hop.codec",
          figure: "codec + framing of one call and its reply (in-process, no socket)",
          unit: "µs",
          value: codecUs,
          baseline: { label: "plain @msgpack/msgpack encode+decode of the same two messages", value: rawCodecUs },
          digits: 2,
        }),
      ],
      series: { hopUs: roundSummary(h, 2), rawUs: roundSummary(r, 2), codecUsPerRoundTrip: round(codecUs, 3), rawMsgpackUsPerRoundTrip: round(rawCodecUs, 3) },
      notes: [],
    };
  },
};
