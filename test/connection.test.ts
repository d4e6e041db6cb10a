import { describe, expect, it } from "vitest";
import { join } from "node:path";
import type { Socket } from "bun";
import { Connection, socketHandlers, type BinaryChannel } from "../src/runtime/channel/connection.ts";
import { InlineChunks, CHUNK_BYTES } from "../src/runtime/channel/inline-chunks.ts";
import type { DataMessage } from "../src/runtime/channel/messages.ts";
import { tempDir, waitFor } from "./harness.ts";

type Call = Extract<DataMessage, { t: "call" }>;

/** Two Connections over a real unix socket: `client` sends, `got` is what the server side received, in order. */
async function linked(dir: string, binary: () => BinaryChannel = () => ({})) {
  const got: Call[] = [];
  let closed = false;
  let server!: Connection;
  const path = join(dir, "c.sock");
  const listener = Bun.listen<Connection>({
    unix: path,
    socket: {
      ...socketHandlers,
      open(socket) {
        socket.data = server = new Connection(socket, { message: (m) => got.push(m as Call), close: () => (closed = true) }, binary());
      },
    },
  });
  const socket: Socket<Connection> = await Bun.connect<Connection>({
    unix: path,
    socket: {
      ...socketHandlers,
      open(s) {
        s.data = new Connection(s, { message: () => {}, close: () => {} }, binary());
      },
    },
  });
  await waitFor(() => server, "the server side to open");
  return { client: socket.data, got, closed: () => closed, stop: () => listener.stop(true) };
}

const call = (id: number, a: unknown[] = [id]): Call => ({ t: "call", id, m: null, a, r: `r${id}` });
/** Yields to the event loop: the next turn begins after this resolves. */
const nextTurn = () => new Promise<void>((r) => setImmediate(r));
/** `n` bytes that differ with `seed` and with position (a misplaced chunk changes the hash). */
function pattern(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + (i >>> 8) * 7 + seed) & 0xff;
  return out;
}

describe("Connection writes", () => {
  it("sends a lone message in the microtask after send, not at the end of the turn", async () => {
    await using dir = tempDir();
    const p = await linked(dir.path);
    const before = p.client.writes;
    p.client.send(call(1));
    expect(p.client.writes).toBe(before);
    await Promise.resolve();
    expect(p.client.writes).toBe(before + 1);
    await waitFor(() => p.got.length === 1, "the message");
    p.stop();
  });

  it("sends what many callbacks of one turn send (each with its own microtask queue) in a few writes, in order", async () => {
    await using dir = tempDir();
    const p = await linked(dir.path);
    await nextTurn();
    const before = p.client.writes;
    let first = 0;
    let last = 0;
    // Each immediate runs as its own callback with the microtask queue drained after it, like HTTP requests do.
    await new Promise<void>((done) => {
      for (let i = 1; i <= 200; i++)
        setImmediate(() => {
          if (i === 1) first = performance.now();
          p.client.send(call(i));
          if (i === 200) (last = performance.now()), done();
        });
    });
    await waitFor(() => p.got.length === 200, "200 messages");
    expect(p.got.map((m) => m.id)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    // Two (the turn's first message, then the rest at its end), plus one per millisecond the turn lasted
    // (a loaded machine can stretch it); one write per message would be 200.
    expect(p.client.writes - before).toBeLessThanOrEqual(2 + Math.ceil(last - first));
    p.stop();
  });

  it("in a turn that lasts, writes again at the next microtask once a millisecond has passed since its last write", async () => {
    await using dir = tempDir();
    const p = await linked(dir.path);
    await nextTurn();
    const before = p.client.writes;
    p.client.send(call(1));
    await Promise.resolve();
    p.client.send(call(2));
    await Promise.resolve();
    expect(p.client.writes - before).toBe(1); // the second waits for the turn's end
    const t0 = performance.now();
    while (performance.now() - t0 < 2); // a producer computing inside the turn
    p.client.send(call(3));
    await Promise.resolve();
    expect(p.client.writes - before).toBe(2); // 2 and 3 left without waiting for the turn to end
    await waitFor(() => p.got.length === 3, "3 messages");
    expect(p.got.map((m) => m.id)).toEqual([1, 2, 3]);
    p.stop();
  });

  it("keeps the order of small and large messages past what the socket takes at once (back-pressure, drain)", async () => {
    await using dir = tempDir();
    const p = await linked(dir.path);
    const sizes = [1, 70_000, 3, 300_000, 12, 5_000_000, 1, 1, 64 * 1024, 64 * 1024 - 1, 2_000_000, 7];
    let id = 0;
    for (let round = 0; round < 4; round++) {
      for (const n of sizes) p.client.send(call(++id, [pattern(n, id)]));
      if (round % 2) await nextTurn();
    }
    await waitFor(() => p.got.length === id, `${id} messages`);
    expect(p.got.map((m) => m.id)).toEqual(Array.from({ length: id }, (_, i) => i + 1));
    for (const m of p.got) expect((m.a[0] as Uint8Array).byteLength === sizes[(m.id - 1) % sizes.length] && Bun.hash(m.a[0] as Uint8Array) === Bun.hash(pattern(sizes[(m.id - 1) % sizes.length]!, m.id))).toBe(true);
    p.stop();
  });

  it("sends large values as chunk frames (InlineChunks) between small messages of the same turn, in order", async () => {
    await using dir = tempDir();
    const p = await linked(dir.path, () => new InlineChunks());
    const big = (id: number) => pattern(3 * CHUNK_BYTES + 17, id);
    for (let id = 1; id <= 30; id++) p.client.send(call(id, [id % 3 === 0 ? big(id) : pattern(40, id)]));
    await waitFor(() => p.got.length === 30, "30 messages");
    expect(p.got.map((m) => m.id)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    for (const m of p.got) expect(Bun.hash(m.a[0] as Uint8Array)).toBe(Bun.hash(m.id % 3 === 0 ? big(m.id) : pattern(40, m.id)));
    p.stop();
  });

  it("delivers what was sent before close() in the same turn, then the end of the stream", async () => {
    await using dir = tempDir();
    const p = await linked(dir.path);
    await nextTurn();
    p.client.send(call(1));
    await Promise.resolve(); // the first write of the turn has left; the next ones wait for the turn's end
    p.client.send(call(2));
    p.client.send(call(3));
    p.client.close();
    await waitFor(() => p.closed(), "the server side to see the close");
    expect(p.got.map((m) => m.id)).toEqual([1, 2, 3]);
    p.stop();
  });
});
