/**
 * The floor of the REP diamond's shapes, with none of serve-bin in them: the
 * diamond's three functions each in its own raw process (echo peers answering
 * one function, bench/lib/echo-peer.ts), and a raw driver process that runs
 * the diamond over them (bench/lib/driver-peer.ts). A bare Bun.serve
 * in front (bench/lib/http-floor.ts) either runs the diamond itself, as a
 * DAGDriver that takes the connections does (proxy.location "ingress": 4
 * processes), or relays each request to the raw driver, as serve-bin's main
 * process does by default (5 processes).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BUN, LIB } from "./paths.ts";
import type { ProcessSet, Tracked } from "./procs.ts";
import { startRawDriver, type RawDriver } from "./raw-floor.ts";

export interface DiamondPeers {
  /** Sockets of the three function peers (model1, model2, ensemble). */
  functions: string[];
  /** Socket of the raw driver, which runs the diamond over them. */
  driver: string;
  /** Pids of the function peers alone, and of every peer (the driver too), by name. */
  pids: { functions: Record<string, number>; all: Record<string, number> };
  close(): Promise<void>;
}

export async function startDiamondPeers(procs: ProcessSet): Promise<DiamondPeers> {
  const dir = mkdtempSync(join(tmpdir(), "sb-bench-diamond-"));
  const started: Tracked[] = [];
  let driver: RawDriver | null = null;
  const close = async () => {
    await driver?.close();
    for (const p of started) await p.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const functions = ["model1", "model2", "ensemble"].map((fn) => join(dir, `${fn}.sock`));
    for (const [i, fn] of ["model1", "model2", "ensemble"].entries()) {
      const p = procs.spawn(`raw ${fn} peer`, [BUN, join(LIB, "echo-peer.ts"), functions[i]!, fn]);
      started.push(p);
      await p.waitFor(/echo peer ready/, 10_000);
    }
    const d = (driver = await startRawDriver(procs, "raw diamond driver", "diamond", functions));
    const functionPids = Object.fromEntries(started.map((p) => [p.name, p.pid]));
    return { functions, driver: d.path, pids: { functions: functionPids, all: { ...functionPids, [d.name]: d.pid } }, close };
  } catch (e) {
    await close();
    throw e;
  }
}
