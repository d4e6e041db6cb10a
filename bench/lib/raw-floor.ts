/**
 * The floor of a request that crosses ten distinct processes, one message per
 * hop and no runtime: ten relay peers in a line (the bench process calls the
 * first, each passes the call on, the last answers), or ten echo peers called
 * at once. Each peer sleeps between messages as a replica does, so every hop
 * pays a wake-up, which the ping-pong between two processes does not always.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BUN, LIB } from "./paths.ts";
import type { ProcessSet, Tracked } from "./procs.ts";
import { RawClient } from "./raw-client.ts";
import { FrameReader } from "./raw-frames.ts";

export interface RawFloor {
  /** The clients the bench process calls: one (the head of the line) or one per echo peer. */
  clients: RawClient[];
  /** Pid of every peer, by name. */
  pids: Record<string, number>;
  /** The sockets `clients` are connected to: another process may connect to them too (bench/lib/http-floor.ts). */
  paths: string[];
  close(): Promise<void>;
}

/** A raw client on a peer's unix socket. */
export async function connectRaw(path: string): Promise<RawClient> {
  let client!: RawClient;
  const conn = await Bun.connect<FrameReader>({
    unix: path,
    socket: { open: (s) => void (s.data = new FrameReader()), data: (_s, chunk) => client.onData(chunk) },
  });
  client = new RawClient(conn);
  return client;
}

/** `n` relay peers in a line ("chain") or `n` echo peers side by side ("fanout"). */
export async function startRawFloor(procs: ProcessSet, shape: "chain" | "fanout", n: number): Promise<RawFloor> {
  const dir = mkdtempSync(join(tmpdir(), "sb-bench-floor-"));
  const peers: Tracked[] = [];
  const clients: RawClient[] = [];
  const paths: string[] = [];
  try {
    // In a line the last peer starts first, so each relay finds its next one listening.
    for (let i = 0; i < n; i++) {
      const path = join(dir, `p${i}.sock`);
      const next = shape === "chain" && i > 0 ? [join(dir, `p${i - 1}.sock`)] : [];
      const p = procs.spawn(`relay peer ${i}`, [BUN, join(LIB, "relay-peer.ts"), path, ...next]);
      peers.push(p);
      await p.waitFor(/relay peer ready/, 10_000);
    }
    paths.push(...(shape === "chain" ? [join(dir, `p${n - 1}.sock`)] : peers.map((_, i) => join(dir, `p${i}.sock`))));
    for (const path of paths) clients.push(await connectRaw(path));
  } catch (e) {
    for (const p of peers) await p.stop();
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    clients,
    pids: Object.fromEntries(peers.map((p, i) => [`peer ${i}`, p.pid])),
    paths,
    async close() {
      for (const c of clients) c.socket.end();
      for (const p of peers) await p.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface RawDriver {
  /** The driver's socket: a relay in front of it (bench/lib/http-floor.ts relay) sends it each request. */
  path: string;
  pid: number;
  name: string;
  close(): Promise<void>;
}

/** A raw driver process (bench/lib/driver-peer.ts) that answers each call by `shape` over the peers at `paths`. */
export async function startRawDriver(procs: ProcessSet, name: string, shape: string, paths: string[]): Promise<RawDriver> {
  const dir = mkdtempSync(join(tmpdir(), "sb-bench-driver-"));
  const path = join(dir, "driver.sock");
  const p = procs.spawn(name, [BUN, join(LIB, "driver-peer.ts"), path, shape, ...paths]);
  const close = async () => {
    await p.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await p.waitFor(/driver peer ready/, 10_000);
  } catch (e) {
    await close();
    throw e;
  }
  return { path, pid: p.pid, name, close };
}
