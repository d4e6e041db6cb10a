/**
 * CPU per hop of a chain of three processes, the raw relay (relay-peer.ts)
 * against the runtime's parts (runtime-peer.ts), in alternating rounds:
 * sequential calls from this process, optionally with an idle gap after each
 * answer (a replica in a served chain idles ~1 ms between its messages).
 * Prints each peer's main-thread CPU per call (/proc/<pid>/schedstat); the
 * middle peer is the one a middle Link compares with. A diagnostic, not a
 * scenario: nothing is written to bench/results.
 *   bun bench/hop-cpu-probe.ts [-n 4000] [--gap-us 0] [--rounds 3]
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BUN, LIB } from "./lib/paths.ts";
import { ProcessSet } from "./lib/procs.ts";
import { RawClient } from "./lib/raw-client.ts";
import { FrameReader } from "./lib/raw-frames.ts";
import { option } from "./lib/cli-option.ts";

const n = Number(option("-n", "4000"));
const gapMs = Number(option("--gap-us", "0")) / 1000;
const rounds = Number(option("--rounds", "3"));
const cpuNs = (pid: number) => Number(readFileSync(`/proc/${pid}/schedstat`, "utf8").split(" ")[0]);

async function chain(procs: ProcessSet, peer: string): Promise<number[]> {
  const dir = mkdtempSync(join(tmpdir(), "sb-bench-hopcpu-"));
  const peers = [];
  try {
    for (let i = 0; i < 3; i++) {
      const p = procs.spawn(`${peer} ${i}`, [BUN, join(LIB, peer), join(dir, `p${i}.sock`), ...(i > 0 ? [join(dir, `p${i - 1}.sock`)] : [])]);
      peers.push(p);
      await p.waitFor(/relay peer ready/, 10_000);
    }
    let client!: RawClient;
    const conn = await Bun.connect<FrameReader>({
      unix: join(dir, "p2.sock"),
      socket: { open: (s) => void (s.data = new FrameReader()), data: (_s, chunk) => client.onData(chunk) },
    });
    client = new RawClient(conn);
    for (let i = 0; i < 2000; i++) await client.call(i);
    const before = peers.map((p) => cpuNs(p.pid));
    for (let i = 0; i < n; i++) {
      await client.call(i);
      if (gapMs > 0) Bun.sleepSync(gapMs);
    }
    const us = peers.map((p, i) => (cpuNs(p.pid) - before[i]!) / 1000 / n);
    conn.end();
    return us;
  } finally {
    for (const p of peers) await p.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const procs = new ProcessSet();
const mid: Record<string, number[]> = { "relay-peer.ts": [], "runtime-peer.ts": [] };
for (let r = 0; r < rounds; r++) {
  for (const peer of Object.keys(mid)) {
    const us = await chain(procs, peer);
    mid[peer]!.push(us[1]!);
    console.log(`${peer.padEnd(16)} CPU µs per call: last ${us[0]!.toFixed(1)}, middle ${us[1]!.toFixed(1)}, first ${us[2]!.toFixed(1)}`);
  }
}
const median = (v: number[]) => [...v].sort((a, b) => a - b)[v.length >> 1]!;
console.log(`middle peer, median of ${rounds}: raw relay ${median(mid["relay-peer.ts"]!).toFixed(1)} µs, runtime ${median(mid["runtime-peer.ts"]!).toFixed(1)} µs (gap ${gapMs * 1000} µs)`);
