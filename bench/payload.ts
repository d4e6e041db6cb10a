/**
 * payload: a Float32Array of 1 MiB and of 16 MiB through a 2-stage chain
 * (driver → stage 1 → stage 2 → driver, timed inside the driver replica),
 * with shared memory on and off, in alternating rounds. GB/s is the array's
 * size over the time of one pass through both stages.
 */
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { FIXTURES } from "./lib/paths.ts";
import { alternate, row, type Scenario } from "./lib/scenario.ts";
import { postJSON, startServeBin, type ServeBin } from "./lib/server.ts";
import { decode, encode } from "../src/wire/codec.ts";
import { frame, FrameDecoder } from "../src/runtime/channel/frame.ts";
import { round, roundSummary, summarize } from "./lib/stats.ts";

/** Median ms of `n` runs of `fn` after one warm-up. */
function timeMs(n: number, fn: () => void): number {
  fn();
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    fn();
    ms.push(performance.now() - t0);
  }
  return summarize(ms).median;
}

const MiB = 1 << 20;

/** Whether a server (or one of its replicas) mapped a shared-memory arena: serve-bin names them serve-bin-<main pid>-…. */
function arenas(s: ServeBin): string[] {
  return readdirSync("/dev/shm").filter((n) => n.startsWith(`serve-bin-${s.pid}-`));
}

export const payload: Scenario = {
  name: "payload",
  title: "Float32Array through a 2-stage chain",
  async run({ quick, procs, log }) {
    const rounds = quick ? 1 : 4;
    const plan = [
      { bytes: MiB, n: quick ? 5 : 25 },
      { bytes: 16 * MiB, n: quick ? 2 : 6 },
    ];
    const on = await startServeBin(procs, join(FIXTURES, "payload-shm-on.yaml"));
    const off = await startServeBin(procs, join(FIXTURES, "payload-shm-off.yaml"));
    const ms: Record<string, number[]> = {};
    let onArenas: string[] = [];
    try {
      const pass = async (s: ServeBin, label: string) => {
        for (const p of plan) (ms[`${label}-${p.bytes / MiB}MiB`] ??= []).push(...(JSON.parse(await postJSON(s.url, p)) as number[]));
      };
      for (const s of [on, off]) for (const p of plan) await postJSON(s.url, { bytes: p.bytes, n: 1 }); // warm up
      log(`payload: ${rounds} alternating rounds, shared memory on and off`);
      await alternate(
        rounds,
        () => pass(on, "on"),
        () => pass(off, "off"),
      );
      onArenas = arenas(on);
    } finally {
      await on.stop();
      await off.stop();
    }
    // Where an inline pass's time goes, in this process: the codec per transfer, and one plain copy.
    const x = new Float32Array((16 * MiB) / 4).fill(1);
    const reps = quick ? 2 : 6;
    const codecMs = timeMs(reps, () => {
      const frames = new FrameDecoder();
      const f = frame(encode({ t: "ok", id: 1, v: x }));
      for (let o = 0; o < f.length; o += 64 * 1024) for (const b of frames.push(f.subarray(o, o + 64 * 1024))) decode(b);
    });
    const copyMs = timeMs(reps, () => new Uint8Array(16 * MiB).set(new Uint8Array(x.buffer)));
    const shmIn = onArenas.length > 0;
    const gbps = (bytes: number, key: string) => bytes / 1e9 / (summarize(ms[key]!).median / 1000);
    const off16 = gbps(16 * MiB, "off-16MiB");
    const off1 = gbps(MiB, "off-1MiB");
    const on16 = shmIn ? gbps(16 * MiB, "on-16MiB") : null;
    const on1 = shmIn ? gbps(MiB, "on-1MiB") : null;
    const series: Record<string, unknown> = { "in-process 16 MiB: codec per transfer ms": round(codecMs, 2), "in-process 16 MiB: one copy ms": round(copyMs, 2) };
    for (const [k, v] of Object.entries(ms)) series[`${k} ms`] = roundSummary(summarize(v), 3);
    return {
      method: `A Float32Array made in the driver replica passes through stage 1 and stage 2 (stage 1's un-awaited response is stage 2's argument; the runtime forwards it, so stage 1's result goes from stage 1's process to stage 2's without passing through the driver, and a pass is 3 transfers of the array: driver → stage 1 → stage 2 → driver); each pass is timed in the driver. GB/s = array bytes (10^9) ÷ median pass time. Two servers, sharedMemory.enabled true and false (bench/fixtures/payload-shm-*.yaml), ${rounds} alternating rounds.`,
      rows: [
        row({
          id: "payload.16MiB.on",
          figure: "16 MiB Float32Array through a 2-stage chain, shared memory on",
          unit: "GB/s",
          value: on16,
          baseline: { label: "shared memory off: the same codec, bytes inline in the socket messages", value: off16 },
          target: "≥ 2 GB/s, and ≥ 5× the bytes inline",
          met: on16 === null ? null : on16 >= 2 && on16 / off16 >= 5,
          note: shmIn ? undefined : "shared memory is not in yet: the server created no arena",
          digits: 3,
        }),
        row({ id: "payload.16MiB.off", figure: "16 MiB, shared memory off (bytes inline)", unit: "GB/s", value: off16, digits: 3 }),
        row({ id: "payload.1MiB.on", figure: "1 MiB, shared memory on", unit: "GB/s", value: on1, baseline: { label: "shared memory off", value: off1 }, note: shmIn ? undefined : "pending shared memory", digits: 3 }),
        row({ id: "payload.1MiB.off", figure: "1 MiB, shared memory off (bytes inline)", unit: "GB/s", value: off1, digits: 3 }),
        row({
          id: "payload.16MiB.codec",
          figure: "16 MiB: encode + frame + deframe (64 KiB chunks) + decode, one transfer, in-process",
          unit: "ms",
          value: codecMs,
          baseline: { label: "one plain 16 MiB copy", value: copyMs },
          note: "a pass makes 3 transfers: driver → stage 1 → stage 2 → driver (stage 1's result is forwarded)",
          digits: 2,
        }),
        row({
          id: "payload.16MiB.ceiling",
          figure: "copy-bound ceiling of a pass: 3 transfers × 2 copies each (into the arena, out to the receiver), from one measured copy",
          unit: "GB/s",
          value: (16 * MiB) / 1e9 / ((6 * copyMs) / 1000),
          digits: 3,
        }),
      ],
      series,
      notes: shmIn
        ? [`shared-memory arenas seen: ${onArenas.length}`]
        : ["The server started with sharedMemory.enabled: true mapped no arena in /dev/shm, so shared memory is not implemented yet: its rows are pending, and the 'on' server's timings (in the series) are the inline path again."],
    };
  },
};
