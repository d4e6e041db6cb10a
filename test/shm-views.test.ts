/**
 * The lifetime rule of values received through shared memory (a view of the
 * sender's block, held until collected), the receiver's holding limit and the
 * sender's fallback under pressure, and sharedArray: in one process, in local
 * execute, and served.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { sharedArray } from "../src/index.ts";
import { shmStats } from "../src/runtime/channel/shm-channel.ts";
import { heldViews } from "../src/runtime/channel/shm-views.ts";
import { ROOT, startServer, tempDir, waitFor, type RunningServer, type TempDir } from "./harness.ts";
import { allBack, hash, MiB, noise, opened, pair, T } from "./shm-helpers.ts";
import { produceLocally, series } from "./fixtures/shm-views-graph.ts";

afterEach(() => {
  for (const s of opened.splice(0)) s.close();
});

describe("a value received through shared memory", () => {
  it("keeps its bytes while it is held, across many later values that reuse the arena", async () => {
    const { a, send, receive } = pair({ arenaBytes: 8 * MiB });
    const kept = receive(send(noise(MiB, 1))) as Uint8Array;
    const sub = new Float32Array(kept.buffer, 4096, 16); // a view of its buffer holds it too
    const subBefore = [...sub];
    for (let i = 0; i < 60; i++) {
      expect(hash(receive(send(noise(MiB, 100 + i))) as Uint8Array)).toEqual(hash(noise(MiB, 100 + i)));
      if (i % 10 === 0) {
        Bun.gc(true);
        await Bun.sleep(1); // finalizers of the dropped values run: their blocks are reused
      }
    }
    expect(hash(kept)).toEqual(hash(noise(MiB, 1)));
    expect([...sub]).toEqual(subBefore);
    expect(a.inFlight).toBeGreaterThanOrEqual(1);
  });

  it("is held by any view of its buffer: dropping the value itself gives nothing back", async () => {
    const { a, send, receive } = pair();
    let value: Float64Array | null = new Float64Array((receive(send(new Float64Array(noise(MiB, 2).buffer))) as Float64Array).buffer);
    const part = value.subarray(10, 20);
    const expected = [...part];
    value = null;
    for (let i = 0; i < 5; i++) {
      Bun.gc(true);
      await Bun.sleep(5);
    }
    expect(a.inFlight).toEqual(1);
    for (let i = 0; i < 4; i++) receive(send(noise(MiB, 300 + i))); // a freed block would be reused (first fit) and overwritten
    expect([...part]).toEqual(expected);
  });

  it("comes back to its sender once nothing refers to it and the collector has run, so usage returns to 0", async () => {
    const { a, send, receive } = pair({ arenaBytes: 32 * MiB });
    let held: unknown[] = [];
    for (let i = 0; i < 12; i++) held.push(receive(send(noise(MiB, i))));
    expect(a.inFlight).toEqual(12);
    held = [];
    await allBack(a);
  });

  it("comes back on its own soon after it is dropped, with no collection asked for by anyone", async () => {
    const { a, send, receive } = pair();
    const sums = () => Array.from({ length: 3 }, (_, i) => hash(receive(send(noise(MiB, 400 + i))) as Uint8Array));
    expect(sums()).toEqual(Array.from({ length: 3 }, (_, i) => hash(noise(MiB, 400 + i))));
    expect(a.inFlight).toBeGreaterThan(0);
    await waitFor(() => a.inFlight === 0, "the receiver's own sweep to give the blocks back");
  });

  it("is copied once the receiver holds half the sender's arena, and the sender goes inline when its arena is full", async () => {
    const { a, send, receive } = pair({ arenaBytes: 8 * MiB });
    const before = shmStats();
    let held: Uint8Array[] = [];
    for (let i = 0; i < 10; i++) held.push(receive(send(noise(MiB, i))) as Uint8Array);
    const after = shmStats();
    // 8 MiB less the header is just under 8 MiB: 3 views fit under half of it, the rest are copies.
    expect([after.views - before.views, after.copies - before.copies, after.fallbacks - before.fallbacks]).toEqual([3, 7, 0]);
    expect(a.inFlight).toEqual(3);
    // The sender's arena fills with values nobody read yet: the overflow goes inline.
    const unread = Array.from({ length: 6 }, (_, i) => send(noise(MiB, 50 + i)));
    expect(shmStats().fallbacks - after.fallbacks).toBeGreaterThan(0);
    expect(unread.filter((m) => m.byteLength > MiB).length).toEqual(shmStats().fallbacks - after.fallbacks);
    expect(unread.map((m) => hash(receive(m) as Uint8Array))).toEqual(Array.from({ length: 6 }, (_, i) => hash(noise(MiB, 50 + i))));
    expect(held.map(hash)).toEqual(Array.from({ length: 10 }, (_, i) => hash(noise(MiB, i))));
    held = [];
    await allBack(a);
  });

  it("hands out a copy when its buffer is transferred, so the moved bytes never change under it", async () => {
    const { a, send, receive } = pair({ arenaBytes: 8 * MiB });
    let got: Uint8Array | null = receive(send(noise(MiB, 3))) as Uint8Array;
    const buffer = got.buffer as ArrayBuffer;
    const moved = buffer.transfer();
    expect([buffer.detached, moved.byteLength]).toEqual([true, MiB]);
    got = null;
    await allBack(a);
    // The block is free and gets overwritten by later values: the moved buffer is not in it.
    for (let i = 0; i < 8; i++) receive(send(noise(MiB, 200 + i)));
    expect(hash(moved)).toEqual(hash(noise(MiB, 3)));
    // The same for transferToFixedLength, which may also shorten it.
    const shorten = () => {
      const other = (receive(send(noise(MiB, 4))) as Uint8Array).buffer as ArrayBuffer;
      const short = other.transferToFixedLength(1000);
      return { detached: other.detached, short };
    };
    const { detached, short } = shorten();
    await allBack(a);
    for (let i = 0; i < 8; i++) receive(send(noise(MiB, 300 + i)));
    expect([detached, hash(short)]).toEqual([true, hash(noise(MiB, 4).subarray(0, 1000))]);
  });
});

describe("sharedArray", () => {
  it("is an ordinary zeroed typed array outside a process with an arena", () => {
    const x = sharedArray(Float32Array, 1 << 20);
    expect([x instanceof Float32Array, x.length, x.every((v) => v === 0)]).toEqual([true, 1 << 20, true]);
    expect(sharedArray(BigInt64Array, 3)).toEqual(new BigInt64Array(3));
  });

  it("refuses a length that is not a whole number from 0 to 2^32, and a kind that is not a typed array", () => {
    for (const n of [-1, 1.5, NaN, 2 ** 32 + 1, Infinity]) expect(() => sharedArray(Float32Array, n)).toThrow(/length must be a whole number from 0 to 4294967296/);
    expect(() => sharedArray(Array as unknown as Float32ArrayConstructor, 4)).toThrow(/kind must be a typed array constructor/);
  });

  it("in local execute gives the same values", async () => {
    const y = (await produceLocally.execute(MiB)) as Float32Array;
    expect([y.constructor.name, hash(y)]).toEqual(["Float32Array", hash(series(MiB, 7))]);
  });

  it("lives in this process's arena and is sent without a copy, also while a receiver still holds it", async () => {
    const { a, send, receive } = pair({ arenaBytes: 16 * MiB });
    const before = shmStats();
    /** Checksum of `first`, or of y sent and received again; zero-copy sends so far; blocks in use. */
    const sums = (y: Float32Array, first: Float32Array | null) => [hash(first ?? (receive(send(y)) as Float32Array)), shmStats().zeroCopy - before.zeroCopy, a.inFlight];
    // Sync steps in plain functions: an async function's frame may keep stale temporaries alive.
    const made = () => series(MiB / 4, 5, sharedArray(Float32Array, MiB / 4));
    const y = [made()];
    expect(a.inFlight).toEqual(1); // its block is reserved while y lives
    const first = [receive(send(y[0]!)) as Float32Array];
    const expected = hash(series(MiB / 4, 5));
    expect(sums(y[0]!, first[0]!)).toEqual([expected, 1, 1]);
    expect(sums(y[0]!, null)).toEqual([expected, 2, 1]); // first still holds the block: a second holder, no copy
    first.pop();
    await waitFor(() => {
      Bun.gc(true);
      return a.inFlight === 1;
    }, "the first receiver to let go");
    expect(sums(y[0]!, null)).toEqual([expected, 3, 1]); // and once it let go, no copy either
    y.pop();
    await allBack(a);
  });

  it("sent to the same receiver again and again, is held there through one reference: 12 views kept at once, none a copy", async () => {
    const { a, send, receive } = pair({ arenaBytes: 16 * MiB });
    const before = shmStats();
    const y = [series(MiB / 4, 3, sharedArray(Float32Array, MiB / 4))];
    // A block has 6 slots: were each view a reference of its own, the 7th send would have to copy.
    const views = Array.from({ length: 12 }, () => receive(send(y[0]!)) as Float32Array);
    const expected = hash(series(MiB / 4, 3));
    expect([...new Set(views.map(hash))]).toEqual([expected]);
    expect([shmStats().zeroCopy - before.zeroCopy, shmStats().views - before.views, shmStats().copies - before.copies, a.inFlight]).toEqual([12, 12, 0, 1]);
    views.length = 0;
    y.pop();
    await allBack(a);
  });

  it("sent again to a receiver that wrote its view, comes as a copy of the sender's bytes, and the written view keeps its write", async () => {
    const { a, send, receive } = pair({ arenaBytes: 16 * MiB });
    const y = [series(MiB / 4, 4, sharedArray(Float32Array, MiB / 4))];
    const expected = hash(series(MiB / 4, 4));
    const first = [receive(send(y[0]!)) as Float32Array];
    first[0]![0] = -1; // this process's own copy of that page now
    const before = shmStats();
    const again = receive(send(y[0]!)) as Float32Array;
    expect([hash(again), shmStats().copies - before.copies, first[0]![0], y[0]![0]]).toEqual([expected, 1, -1, series(MiB / 4, 4)[0]]);
    // Once the written view is gone, its page is dropped: the next one is a view again, of the sender's bytes.
    first.pop();
    await waitFor(() => {
      Bun.gc(true);
      return heldViews() === 0;
    }, "the written view to be let go");
    const views = shmStats().views;
    const third = [receive(send(y[0]!)) as Float32Array];
    expect([hash(third[0]!), shmStats().views - views, shmStats().copies - before.copies]).toEqual([expected, 1, 1]);
    third.pop();
    y.pop();
    await allBack(a);
  });

  it("is zeroed when its block is reused, ordinary below the threshold, and ordinary when the arena has no room", async () => {
    const { a } = pair({ arenaBytes: 4 * MiB });
    let x: Uint8Array | null = sharedArray(Uint8Array, MiB).fill(9);
    x = null;
    await allBack(a);
    const again = sharedArray(Uint8Array, MiB);
    expect([a.inFlight, again.every((v) => v === 0)]).toEqual([1, true]);
    const small = sharedArray(Uint8Array, T - 1);
    expect(a.inFlight).toEqual(1);
    const before = shmStats().fallbacks;
    const big = sharedArray(Uint8Array, 8 * MiB);
    expect([big.length, a.inFlight, shmStats().fallbacks - before]).toEqual([8 * MiB, 1, 1]);
    expect(small.length + again.length).toEqual(T - 1 + MiB);
  });
});

describe("served: sharedArray results and views kept across calls", () => {
  let dir: TempDir;
  let server: RunningServer;
  beforeAll(async () => {
    dir = tempDir();
    const config = join(dir.path, "views.json");
    writeFileSync(config, JSON.stringify({ sharedMemory: { thresholdBytes: T, arenaBytes: 32 * MiB }, applications: [{ name: "default", routePrefix: "/", importPath: join(ROOT, "test/fixtures/shm-views-graph.ts") }] }));
    server = await startServer(config, { args: ["--app-dir", ROOT] });
  });
  afterAll(async () => {
    await server?.stop();
    await dir?.[Symbol.asyncDispose]();
  });
  const get = async (path: string) => (await fetch(`${server.url}${path}`)).json();
  type Stats = ReturnType<typeof shmStats>;

  it("sends a replica's sharedArray result without a copy, byte for byte", async () => {
    for (const seed of [1, 2, 3]) expect(await get(`/produce?n=${2 * MiB}&seed=${seed}`)).toEqual({ kind: "Float32Array", length: 2 * MiB, sum: hash(series(2 * MiB, seed)).toString(16) });
    const { producer, ingress } = (await get("/stats")) as Record<string, Stats>;
    expect(producer.zeroCopy).toBeGreaterThanOrEqual(1);
    expect(ingress.views).toBeGreaterThanOrEqual(1);
  });

  it("keeps a value a replica holds unchanged across 40 later calls whose values reuse the sender's arena", async () => {
    const first = hash(series(MiB, 1000)).toString(16);
    for (let i = 0; i < 40; i++) expect(await get(`/keep?mib=4&seed=${1000 + i}`)).toEqual({ first, now: hash(series(MiB, 1000 + i)).toString(16) });
    const { keeper, ingress } = (await get("/stats")) as Record<string, Stats>;
    expect(keeper.views).toBeGreaterThanOrEqual(20); // 40 × 4 MiB through a 32 MiB arena: blocks came back and were reused
    expect(ingress.fallbacks).toEqual(0);
  });
});
