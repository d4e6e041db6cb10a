import { afterEach, describe, expect, it } from "vitest";
import { closeSync, existsSync, fstatSync, openSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Socket, Subprocess } from "bun";
import { decode, encode, EncodeError } from "../src/wire/codec.ts";
import { Connection, socketHandlers, type BinaryChannel } from "../src/runtime/channel/connection.ts";
import type { DataMessage } from "../src/runtime/channel/messages.ts";
import { ReplicaClient } from "../src/runtime/replica-client.ts";
import { SharedMemory, shmStats, type SharedMemoryOptions } from "../src/runtime/channel/shm-channel.ts";
import { BUN, ROOT, tempDir, waitFor } from "./harness.ts";
import { allBack, bytesOf, hash, MiB, noise, opened, options, pair, T } from "./shm-helpers.ts";

afterEach(() => {
  for (const s of opened.splice(0)) s.close();
});

type Ctor = { new (b: ArrayBuffer, off?: number, len?: number): ArrayBufferView; BYTES_PER_ELEMENT?: number; name: string };
const F16 = (globalThis as { Float16Array?: Ctor }).Float16Array;
const VIEWS: Ctor[] = [Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array, ...(F16 ? [F16] : []), DataView];

/** Every binary kind the codec carries, over `n` bytes of noise (n a multiple of 8). */
function everyKind(n: number, seed: number): [string, ArrayBuffer | ArrayBufferView][] {
  const kinds: [string, ArrayBuffer | ArrayBufferView][] = VIEWS.map((C, i) => [C.name, new C(noise(n, seed + i).buffer)]);
  kinds.push(["ArrayBuffer", noise(n, seed + 100).buffer]);
  kinds.push(["Buffer", Buffer.from(noise(n, seed + 101).buffer)]);
  // A view into the middle of a larger buffer carries only its own bytes.
  kinds.push(["Float32Array (offset view)", new Float32Array(noise(n + 64, seed + 102).buffer, 32, n / 4)]);
  return kinds;
}

/** Buffer arrives as a plain Uint8Array (the codec's rule); every other kind keeps its class. */
const arrivesAs = (v: unknown) => (Buffer.isBuffer(v) ? "Uint8Array" : (v as object).constructor.name);

describe("shared memory between two arenas", () => {
  it("carries every binary kind byte for byte just below, at and above the threshold, and only values at or above it leave the message", () => {
    const { send, receive } = pair();
    for (const n of [T - 8, T, T + 8]) {
      for (const [name, v] of everyKind(n, n)) {
        const before = shmStats();
        const bytes = send({ v });
        const back = (receive(bytes) as { v: ArrayBuffer | ArrayBufferView }).v;
        expect({ name, n, kind: back.constructor.name, hash: hash(back), length: bytesOf(back).byteLength }).toEqual({ name, n, kind: arrivesAs(v), hash: hash(v), length: n });
        const viaShm = n >= T;
        expect({ name, n, small: bytes.byteLength < 200, transfers: shmStats().transfers - before.transfers }).toEqual({ name, n, small: viaShm, transfers: viaShm ? 1 : 0 });
      }
    }
  });

  it("carries 1 MiB, 16 MiB and 64 MiB values nested at any depth in objects, arrays, Maps and Sets", () => {
    const { send, receive } = pair({ arenaBytes: 160 * MiB });
    const f32 = new Float32Array(noise(64 * MiB, 7).buffer);
    const u8 = noise(16 * MiB, 8);
    const f64 = new Float64Array(noise(MiB, 9).buffer);
    const value = {
      deep: [{ a: [[f32]] }],
      map: new Map<unknown, unknown>([["u8", u8], [1, { f64 }]]),
      set: new Set([new DataView(noise(MiB, 10).buffer)]),
      n: 5n,
      s: "text",
    };
    const bytes = send(value);
    expect(bytes.byteLength).toBeLessThan(1000);
    const back = receive(bytes) as typeof value;
    expect(back.deep[0]!.a[0]![0]).toBeInstanceOf(Float32Array);
    expect(hash(back.deep[0]!.a[0]![0]!)).toEqual(hash(f32));
    expect(hash(back.map.get("u8") as Uint8Array)).toEqual(hash(u8));
    expect(hash((back.map.get(1) as { f64: Float64Array }).f64)).toEqual(hash(f64));
    expect(hash([...back.set][0]!)).toEqual(hash([...value.set][0]!));
    expect([back.n, back.s]).toEqual([5n, "text"]);
  });

  it("gives the receiver a view of the sender's block, held until the view is collected, and refuses a descriptor read twice", async () => {
    const { a, send, receive } = pair();
    const sent = noise(MiB, 1);
    const bytes = send(sent);
    expect(a.inFlight).toEqual(1);
    let got: Uint8Array | null = receive(bytes) as Uint8Array;
    expect(a.inFlight).toEqual(1); // held by the view, not copied
    expect(got.buffer.byteLength).toEqual(MiB); // its buffer is exactly the value: nothing else of the arena shows
    got.fill(0); // the receiver's own block: changing it changes nothing the sender holds
    expect(hash(sent)).toEqual(hash(noise(MiB, 1)));
    expect(() => receive(bytes)).toThrow(/already read or reclaimed/);
    got = null;
    await allBack(a);
  });

  it("reuses freed room: a 90 MiB arena carries 40 values of 16 MiB one after another", async () => {
    const { a, send, receive } = pair({ arenaBytes: 90 * MiB });
    const before = shmStats();
    const v = new Float32Array(noise(16 * MiB, 3).buffer);
    for (let i = 0; i < 40; i++) expect(hash(receive(send(v)) as Float32Array)).toEqual(hash(v));
    expect(shmStats().fallbacks - before.fallbacks).toEqual(0);
    expect(shmStats().transfers - before.transfers).toEqual(40);
    await allBack(a);
  });

  it("sends a value inline when the arena is full, counts the fallback, and the answer is the same", async () => {
    const { a, send, receive } = pair({ arenaBytes: 2 * MiB });
    const before = shmStats();
    const x = noise(1_200_000, 4);
    const y = noise(1_200_000, 5);
    const first = send(x); // takes most of the arena
    const second = send(y); // no room left: inline
    expect([first.byteLength < 200, second.byteLength > 1_200_000]).toEqual([true, true]);
    expect([shmStats().transfers, shmStats().fallbacks]).toEqual([before.transfers + 1, before.fallbacks + 1]);
    expect([hash(receive(second) as Uint8Array), hash(receive(first) as Uint8Array)]).toEqual([hash(y), hash(x)]);
    expect(hash(receive(send(y)) as Uint8Array)).toEqual(hash(y)); // room again once read
    expect(shmStats().fallbacks - before.fallbacks).toEqual(1);
    await allBack(a);
  });

  it("keeps 200 transfers of mixed sizes in flight at once, freed in random order, without corrupting any", async () => {
    const { a, send, receive } = pair({ arenaBytes: 64 * MiB });
    const before = shmStats();
    const sizes = Array.from({ length: 200 }, (_, i) => [T, 100_000, 300_000, MiB, 3 * MiB][i % 5]! + (i % 7) * 8);
    const tasks = sizes.map(async (n, i) => {
      const v = new Float64Array(noise(n, i).buffer);
      await Bun.sleep(Math.random() * 5); // sends and reads interleave in every order
      const bytes = send({ i, v });
      await Bun.sleep(Math.random() * 5);
      const back = receive(bytes) as { i: number; v: Float64Array };
      return back.i === i && hash(back.v) === hash(v);
    });
    expect((await Promise.all(tasks)).every(Boolean)).toBe(true);
    const s = shmStats();
    expect(s.transfers - before.transfers + (s.fallbacks - before.fallbacks)).toEqual(200);
    expect(s.transfers - before.transfers).toBeGreaterThan(20);
    await allBack(a);
    // Everything was freed, so the whole arena is one block again.
    expect(hash(receive(send(noise(60 * MiB, 1))) as Uint8Array)).toEqual(hash(noise(60 * MiB, 1)));
  });

  it("sends everything inline when enabled is false", () => {
    const { a, send, receive } = pair({ enabled: false });
    const v = noise(MiB, 2);
    const bytes = send(v);
    expect([a.writer, a.arenaPath, bytes.byteLength > MiB]).toEqual([undefined, null, true]);
    expect(hash(receive(bytes) as Uint8Array)).toEqual(hash(v));
  });

  it("turns itself off with one warning line when /dev/shm has no room for the arena", () => {
    const lines: string[] = [];
    const s = SharedMemory.open(options({ arenaBytes: 2 ** 50 }), process.pid, (l) => lines.push(l));
    opened.push(s);
    expect([s.writer, s.arenaPath, lines.length]).toEqual([undefined, null, 1]);
    expect(lines[0]).toMatch(/shared memory is off in process \d+: \/dev\/shm has \d+ bytes free, less than sharedMemory.arenaBytes .*--shm-size/);
  });

  it("frees its arena's pages at close when nothing is left to read, though another process still maps it", async () => {
    const { a, send, receive } = pair();
    const fd = openSync(a.arenaPath!, "r");
    try {
      for (let i = 0; i < 4; i++) receive(send(noise(8 * MiB, i)));
      expect(fstatSync(fd).blocks * 512).toBeGreaterThanOrEqual(8 * MiB);
      await allBack(a);
      a.close();
      expect(fstatSync(fd).blocks * 512).toBeLessThan(MiB); // the header only
    } finally {
      closeSync(fd);
    }
  });

  it("creates its arena exclusively, mode 0600, named serve-bin-<server pid>-<pid>-<random>, and unlinks it on close", () => {
    // A live pid as the server's (this runner's parent): a server another test file starts meanwhile
    // sweeps /dev/shm files named for dead servers, and would take this one under a made-up pid.
    const server = process.ppid;
    const s = SharedMemory.open(options(), server);
    const path = s.arenaPath!;
    expect(path).toMatch(new RegExp(`^/dev/shm/serve-bin-${server}-${process.pid}-[0-9a-z]{8,}$`));
    expect(statSync(path).mode & 0o777).toEqual(0o600);
    expect(statSync(path).size).toEqual(96 * MiB);
    s.close();
    expect(existsSync(path)).toBe(false);
  });
});

/** A client and a server Connection over a real unix socket, each with its own shared memory. */
async function socketPair(dir: string, server: BinaryChannel, client: BinaryChannel, echo = false) {
  const got: DataMessage[] = [];
  let serverConn!: Connection;
  const path = join(dir, "s.sock");
  const listener = Bun.listen<Connection>({
    unix: path,
    socket: {
      ...socketHandlers,
      open(socket) {
        const message = (m: DataMessage, c: Connection) => {
          got.push(m);
          if (echo && m.t === "call") c.send({ t: "ok", id: m.id, v: m.a[0] });
        };
        socket.data = serverConn = new Connection(socket, { message, close: () => {} }, server);
      },
    },
  });
  const replies: DataMessage[] = [];
  const socket: Socket<Connection> = await Bun.connect<Connection>({
    unix: path,
    socket: {
      ...socketHandlers,
      open(s) {
        s.data = new Connection(s, { message: (m) => replies.push(m), close: () => {} }, client);
      },
    },
  });
  await waitFor(() => serverConn, "the server side to open");
  return { client: socket.data, server: () => serverConn, got, replies, stop: () => listener.stop(true) };
}

describe("shared memory on a Connection", () => {
  it("carries a call's large arguments and its large result through shared memory, not the socket", async () => {
    await using dir = tempDir();
    const { a, b } = pair();
    const p = await socketPair(dir.path, b, a);
    const x = new Float32Array(noise(4 * MiB, 11).buffer);
    const before = shmStats();
    p.client.send({ t: "call", id: 1, m: "run", a: [x, { y: noise(T, 12) }], r: "req" });
    const call = (await waitFor(() => p.got[0], "the call")) as Extract<DataMessage, { t: "call" }>;
    expect([hash(call.a[0] as Float32Array), hash((call.a[1] as { y: Uint8Array }).y)]).toEqual([hash(x), hash(noise(T, 12))]);
    p.server().send({ t: "ok", id: 1, v: call.a[0] });
    const reply = (await waitFor(() => p.replies[0], "the reply")) as Extract<DataMessage, { t: "ok" }>;
    expect([reply.v instanceof Float32Array, hash(reply.v as Float32Array)]).toEqual([true, hash(x)]);
    expect(shmStats().transfers - before.transfers).toEqual(3);
    p.got.length = p.replies.length = 0;
    await allBack(a, b);
    p.stop();
  });

  it("gives values sent inline their own memory, never a view of the socket's read buffer (Bun hands data over as a Buffer)", async () => {
    await using dir = tempDir();
    const p = await socketPair(dir.path, {}, {}, true);
    const sent: Float32Array[] = [];
    for (const n of [4 * MiB, 4 * MiB, 4 * MiB, 256, 256, 1000, 256]) {
      const x = new Float32Array(noise(n * 4, n + sent.length).buffer);
      sent.push(x);
      p.client.send({ t: "call", id: sent.length, m: null, a: [x], r: crypto.randomUUID() });
      await waitFor(() => p.replies.length === sent.length, "the echo");
    }
    const values = (ms: DataMessage[]) => ms.map((m) => hash((m.t === "call" ? m.a[0] : (m as { v: unknown }).v) as Float32Array));
    expect({ received: values(p.got), echoed: values(p.replies) }).toEqual({ received: sent.map(hash), echoed: sent.map(hash) });
    p.stop();
  });

  it("frees the blocks of a message that fails to encode", async () => {
    await using dir = tempDir();
    const { a, b } = pair();
    const p = await socketPair(dir.path, b, a);
    expect(() => p.client.send({ t: "call", id: 1, m: null, a: [noise(MiB, 1), () => 0], r: "req" })).toThrow(EncodeError);
    expect(a.inFlight).toEqual(0);
    p.stop();
  });

  it("fails a handle call whose argument cannot be encoded with an 'encode' error at once, and frees what it had put", async () => {
    await using dir = tempDir();
    const { a, b } = pair();
    const p = await socketPair(dir.path, b, a);
    const client = new ReplicaClient({ id: "r#0", socket: join(dir.path, "s.sock") }, "Model", a, () => {});
    // Not yet connected: the call is written once the socket opens, and its failure reaches the pending call.
    const reply = new Promise((ok, reject) => client.send({ ok, busy: () => ok(undefined), reject }, { method: null, args: [noise(MiB, 1), () => 0], requestId: "req" }));
    await expect(reply).rejects.toMatchObject({ code: "encode", deployment: "Model", message: expect.stringMatching(/Cannot send a function at \$\.a\[1\]/) });
    expect(a.inFlight).toEqual(0);
    client.close();
    p.stop();
  });

  it("fails the call at once with 503 when a value in its reply cannot be read, instead of letting it hang", async () => {
    await using dir = tempDir();
    const { a, b } = pair();
    const p = await socketPair(dir.path, a, b);
    p.server().send({ t: "ok", id: 8, v: [noise(MiB, 13), noise(MiB, 14)] });
    a.close(); // the sender exits before the reply is read, and the receiver had never mapped its arena
    const r = await waitFor(() => p.replies[0], "the reply");
    expect(r).toMatchObject({ t: "err", id: 8, e: { code: "unavailable" } });
    expect((r as { e: { message: string } }).e.message).toMatch(/could not be read.*shared memory .* is gone.*has probably exited.*retry the request/);
    p.stop();
  });

  it("still delivers a value its sender sent just before exiting, to a receiver that had its arena mapped", async () => {
    await using dir = tempDir();
    const { a, b } = pair();
    const p = await socketPair(dir.path, a, b);
    decode(encode(noise(T, 1), { binary: a.writer }), { binary: b.reader }); // b has mapped a's arena
    const v = noise(MiB, 15);
    p.server().send({ t: "ok", id: 9, v });
    a.close(); // waits 200 ms for the reply to be read, then unlinks the file, keeping its data
    const r = await waitFor(() => p.replies[0], "the reply");
    expect([r.t, hash((r as { v: Uint8Array }).v)]).toEqual(["ok", hash(v)]);
    p.stop();
  });

  it("reclaims what a closed connection sent and nobody read, once the room is needed", async () => {
    await using dir = tempDir();
    const { a, b } = pair({ arenaBytes: 8 * MiB });
    const p = await socketPair(dir.path, b, a);
    const before = shmStats();
    p.client.send({ t: "call", id: 1, m: null, a: [noise(6 * MiB, 1)], r: "req" });
    p.client.close(); // before the message left: nobody will ever read its block
    expect(a.inFlight).toEqual(1);
    const other = a.link();
    const bytes = encode(noise(6 * MiB, 2), { binary: other.writer });
    other.commit();
    expect([bytes.byteLength < 200, shmStats().fallbacks - before.fallbacks]).toEqual([true, 0]);
    p.stop();
  });
});

type Reply = { id: number; hash?: string; kind?: string; bytes?: Uint8Array; error?: string };

interface Peer extends AsyncDisposable {
  proc: Subprocess;
  arena: string;
  stats: { inFlight: number } | null;
}

/** Starts test/fixtures/shm-peer.ts; `onReply` runs as each reply arrives; with `hold` it keeps every value it receives. */
async function startPeer(o: SharedMemoryOptions, onReply: (r: Reply) => void = () => {}, hold = false): Promise<Peer> {
  const peer: Peer = {
    arena: "",
    stats: null,
    proc: Bun.spawn([BUN, join(ROOT, "test/fixtures/shm-peer.ts"), JSON.stringify(o), ...(hold ? ["hold"] : [])], {
      stdio: ["ignore", "inherit", "inherit"],
      serialization: "advanced",
      ipc(m: { t?: string; arena?: string; inFlight?: number }) {
        if (m.t === "ready") peer.arena = m.arena!;
        else if (m.t === "stats") peer.stats = { inFlight: m.inFlight! };
        else onReply(m as Reply);
      },
    }),
    async [Symbol.asyncDispose]() {
      peer.proc.kill("SIGKILL");
      await peer.proc.exited;
    },
  };
  await waitFor(() => peer.arena, "the peer process to map its arena");
  return peer;
}

describe("two real processes mapping each other's arena", () => {
  it("round trips 200 concurrent values of mixed sizes and kinds both ways, byte for byte", async () => {
    const o = options({ arenaBytes: 48 * MiB });
    const me = SharedMemory.open(o, process.pid);
    opened.push(me);
    const link = me.link();
    const kinds = [Float32Array, Uint8Array, Int32Array, Float64Array, BigInt64Array, Uint16Array];
    const sizes = Array.from({ length: 200 }, (_, i) => [1024, T - 8, T, 200_000, MiB, 2 * MiB + 8][i % 6]!);
    const sent = sizes.map((n, i) => new kinds[i % kinds.length]!(noise(n, i).buffer) as ArrayBufferView);
    const results = new Map<number, string>();
    // Each side reads the other's arena as replies arrive, while it keeps allocating in its own.
    await using peer = await startPeer(o, (r) => {
      const v = sent[r.id]!;
      if (r.error) return results.set(r.id, r.error);
      const back = (decode(r.bytes!, { binary: link.reader }) as { value: ArrayBufferView }).value;
      const ok = r.hash === hash(v).toString(16) && r.kind === v.constructor.name && back.constructor === v.constructor && hash(back) === hash(v);
      results.set(r.id, ok ? "ok" : "mismatch");
    });
    const before = shmStats();
    for (const [id, value] of sent.entries()) {
      peer.proc.send({ id, bytes: encode({ value }, { binary: link.writer }) });
      link.commit();
      if (id % 10 === 9) await Bun.sleep(1);
    }
    await waitFor(() => results.size === 200, "200 replies", 30_000);
    expect([...results].filter(([, r]) => r !== "ok")).toEqual([]);
    const s = shmStats();
    expect(s.transfers - before.transfers + (s.fallbacks - before.fallbacks)).toEqual(sizes.filter((n) => n >= T).length);
    // Each side holds views of the other's blocks until its collector has run.
    await waitFor(async () => {
      peer.stats = null;
      peer.proc.send({ t: "stats" }); // the peer collects, then reports
      await waitFor(() => peer.stats, "the peer's stats");
      Bun.gc(true);
      return me.inFlight === 0 && peer.stats!.inFlight === 0;
    }, "both arenas to be empty once the views are collected");
  });

  it("takes back the blocks a receiver held as views when the receiver is killed, and its views of a dead sender stay readable", async () => {
    const o = options({ arenaBytes: 32 * MiB });
    const me = SharedMemory.open(o, process.pid);
    opened.push(me);
    const link = me.link();
    const replies: Reply[] = [];
    const peer = await startPeer(o, (r) => replies.push(r), true);
    const sent = Array.from({ length: 6 }, (_, i) => noise(2 * MiB, 40 + i));
    for (const [id, value] of sent.entries()) {
      peer.proc.send({ id, bytes: encode({ value }, { binary: link.writer }) });
      link.commit();
    }
    await waitFor(() => replies.length === 6, "6 replies");
    expect(replies.map((r) => r.hash)).toEqual(sent.map((v) => hash(v).toString(16)));
    // The peer keeps every value: its views hold 6 of my blocks, and collecting here changes nothing.
    Bun.gc(true);
    expect(me.inFlight).toEqual(6);
    // I hold views of the 6 values it sent back, from its arena.
    const back = replies.map((r) => (decode(r.bytes!, { binary: link.reader }) as { value: Uint8Array }).value);
    peer.proc.kill("SIGKILL");
    await peer.proc.exited;
    await waitFor(() => me.inFlight === 0, "my blocks to come back from the dead holder");
    // The dead sender's file goes (the server's sweep) but is not shrunk under my views: reading them does not fault.
    expect(me.reapDeadOwners()).toEqual([peer.arena]);
    expect(back.map(hash)).toEqual(sent.map(hash));
  });

  it("in the server's process, removes the arena of a process killed with SIGKILL", async () => {
    const o = options();
    const me = SharedMemory.open(o, process.pid);
    opened.push(me);
    const peer = await startPeer(o);
    const path = peer.arena;
    expect(path).toMatch(new RegExp(`^/dev/shm/serve-bin-${process.pid}-${peer.proc.pid}-`));
    await peer[Symbol.asyncDispose]();
    expect(existsSync(path)).toBe(true);
    expect(me.reapDeadOwners()).toEqual([path]);
    expect(readdirSync("/dev/shm").filter((n) => n.includes(`-${peer.proc.pid}-`))).toEqual([]);
  });
});
