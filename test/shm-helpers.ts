/** Helpers shared by the shared-memory tests: two arenas in one process, noise, checksums. */
import { decode, encode } from "../src/wire/codec.ts";
import { SharedMemory, type SharedMemoryOptions } from "../src/runtime/channel/shm-channel.ts";
import { waitFor } from "./harness.ts";

export const T = 64 * 1024;
export const MiB = 1 << 20;
export const options = (o: Partial<SharedMemoryOptions> = {}): SharedMemoryOptions => ({ enabled: true, thresholdBytes: T, arenaBytes: 96 * MiB, dir: "/dev/shm", ...o });

/** Every SharedMemory `pair` opened; a test file closes them after each test. */
export const opened: SharedMemory[] = [];

/** Two processes' worth of shared memory in this one: `a` sends, `b` receives (`a` is opened last, so sharedArray uses its arena). */
export function pair(o: Partial<SharedMemoryOptions> = {}) {
  const b = SharedMemory.open(options(o), process.pid);
  const a = SharedMemory.open(options(o), process.pid);
  opened.push(a, b);
  const la = a.link();
  const lb = b.link();
  const send = (value: unknown) => {
    const bytes = encode(value, { binary: la.writer });
    la.commit();
    return bytes;
  };
  const receive = (bytes: Uint8Array) => decode(bytes, { binary: lb.reader });
  return { a, b, send, receive };
}

/**
 * Waits until every block these arenas sent is back: a received value is a view that
 * holds its block until the collector finds it unreachable, so collect while waiting.
 */
export async function allBack(...arenas: SharedMemory[]): Promise<void> {
  await waitFor(() => {
    Bun.gc(true);
    return arenas.every((s) => s.inFlight === 0);
  }, "every block to come back once its views are collected");
}

/** Deterministic noise (xorshift), fast enough for 64 MiB. */
export function noise(n: number, seed: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n);
  const words = new Uint32Array(out.buffer, 0, n >> 2);
  let x = seed | 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x;
  }
  for (let i = words.length * 4; i < n; i++) out[i] = (i * 31 + seed) & 0xff;
  return out;
}

export const bytesOf = (v: ArrayBuffer | ArrayBufferView) => (v instanceof ArrayBuffer ? new Uint8Array(v) : new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
export const hash = (v: ArrayBuffer | ArrayBufferView) => Bun.hash(bytesOf(v));

