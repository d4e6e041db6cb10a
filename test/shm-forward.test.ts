/**
 * Forwarding without a copy (issue 14): a value received as a view of a block
 * and sent on is a reference to the same block, so a block may have several
 * holders at once. It keeps its bytes while any holds it, goes back to its
 * owner when the last lets go (or dies), and stays readable when its owner dies.
 */
import { afterEach, describe, expect, it } from "vitest";
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { decode, encode } from "../src/wire/codec.ts";
import { SharedMemory, shmStats } from "../src/runtime/channel/shm-channel.ts";
import { heldViews } from "../src/runtime/channel/shm-views.ts";
import { BUN, ROOT, waitFor } from "./harness.ts";
import { hash, MiB, noise, opened, options, T } from "./shm-helpers.ts";

afterEach(() => {
  for (const s of opened.splice(0)) s.close();
});

type Answer = { t: "ok" | "error"; message?: string; bytes?: Uint8Array; hash?: string; inFlight?: number; forwards?: number; transfers?: number };

/** A test/fixtures/shm-holder.ts process, asked one thing at a time. */
class Holder implements AsyncDisposable {
  arena = "";
  #waiting: ((a: Answer) => void) | null = null;
  readonly proc: Subprocess;
  constructor(o: ReturnType<typeof options>) {
    this.proc = Bun.spawn([BUN, join(ROOT, "test/fixtures/shm-holder.ts"), JSON.stringify(o)], {
      stdio: ["ignore", "inherit", "inherit"],
      serialization: "advanced",
      ipc: (m: Answer & { arena?: string }) => {
        if ("arena" in m && m.arena) this.arena = m.arena;
        else this.#waiting?.(m);
      },
    });
  }
  static async start(o: ReturnType<typeof options>): Promise<Holder> {
    const h = new Holder(o);
    await waitFor(() => h.arena, "the holder process to open its arena");
    return h;
  }
  async ask(m: Record<string, unknown>): Promise<Answer> {
    const answer = new Promise<Answer>((resolve) => (this.#waiting = resolve));
    this.proc.send(m);
    const a = await answer;
    this.#waiting = null;
    if (a.t === "error") throw new Error(a.message);
    return a;
  }
  async kill(): Promise<void> {
    this.proc.kill("SIGKILL");
    await this.proc.exited;
  }
  async [Symbol.asyncDispose]() {
    if (this.proc.exitCode === null && this.proc.signalCode === null) await this.kill();
  }
}

/** Encodes `value` through `shm`'s arena. */
function sendFrom(shm: SharedMemory, value: unknown): Uint8Array {
  const link = shm.link();
  const bytes = encode({ value }, { binary: link.writer });
  link.commit();
  return bytes;
}

/** My SharedMemory (the owner) and `n` holder processes, all stopped at the end. */
async function setup(n: number) {
  const o = options({ arenaBytes: 32 * MiB });
  const me = SharedMemory.open(o, process.pid);
  opened.push(me);
  const holders = await Promise.all(Array.from({ length: n }, () => Holder.start(o)));
  return {
    me,
    holders,
    async [Symbol.asyncDispose]() {
      for (const h of holders) await h[Symbol.asyncDispose]();
    },
  };
}

/** Collects here and asks `inFlight` until every block of `shm` is back. */
async function emptyAgain(shm: SharedMemory): Promise<void> {
  await waitFor(() => {
    Bun.gc(true);
    return shm.inFlight === 0;
  }, "every block of the owner's arena to come back");
}

describe("a block forwarded through several processes", () => {
  it("is one block held by both forwarders, keeps its bytes while either holds it, and is freed only when both let go", async () => {
    await using t = await setup(2);
    const { me, holders: [a, b] } = t;
    const value = noise(4 * MiB, 7);
    const expected = hash(value).toString(16);
    expect((await a.ask({ t: "take", id: "x", bytes: sendFrom(me, value) })).hash).toBe(expected);
    // A sends it on to B (which never talked to me): a reference to my block, not a copy into A's arena.
    const forwarded = (await a.ask({ t: "send", id: "x" })).bytes!;
    expect(forwarded.byteLength).toBeLessThan(4096);
    expect((await b.ask({ t: "take", id: "x", bytes: forwarded })).hash).toBe(expected);
    const aStats = await a.ask({ t: "stats" });
    expect([aStats.forwards, aStats.inFlight]).toEqual([1, 0]);
    expect(me.inFlight).toBe(1);
    // A lets go; B still holds it: the block stays mine and is not reused by the values I send next.
    await a.ask({ t: "drop", id: "x" });
    for (let i = 0; i < 12; i++) {
      await a.ask({ t: "take", id: "later", bytes: sendFrom(me, noise(4 * MiB, 100 + i)) });
      await a.ask({ t: "drop", id: "later" });
    }
    Bun.gc(true);
    expect(me.inFlight).toBe(1);
    expect((await b.ask({ t: "hash", id: "x" })).hash).toBe(expected);
    // B lets go too: nobody refers to it, and my arena is empty again.
    await b.ask({ t: "drop", id: "x" });
    await emptyAgain(me);
    expect([(await a.ask({ t: "stats" })).inFlight, (await b.ask({ t: "stats" })).inFlight]).toEqual([0, 0]);
  });

  it("lets a holder write its view in place without anyone else seeing it, and sends a written view as a copy", async () => {
    await using t = await setup(3);
    const { me, holders: [a, b, c] } = t;
    const value = noise(4 * MiB, 21);
    const expected = hash(value).toString(16);
    const inverted = hash(value.map((v) => ~v & 0xff)).toString(16);
    await a.ask({ t: "take", id: "x", bytes: sendFrom(me, value) });
    await b.ask({ t: "take", id: "x", bytes: (await a.ask({ t: "send", id: "x" })).bytes! });
    // A writes its view: its own bytes change, B's (the same block) do not.
    expect((await a.ask({ t: "write", id: "x" })).hash).toBe(inverted);
    expect((await b.ask({ t: "hash", id: "x" })).hash).toBe(expected);
    // A sends it on again: what it holds now, a copy into its own arena, not the block as first sent.
    const forwards = (await a.ask({ t: "stats" })).forwards;
    expect((await c.ask({ t: "take", id: "x", bytes: (await a.ask({ t: "send", id: "x" })).bytes! })).hash).toBe(inverted);
    expect((await a.ask({ t: "stats" })).forwards).toBe(forwards);
    // B writes too; A and C keep theirs.
    expect((await b.ask({ t: "write", id: "x" })).hash).toBe(inverted);
    expect([(await a.ask({ t: "hash", id: "x" })).hash, (await c.ask({ t: "hash", id: "x" })).hash]).toEqual([inverted, inverted]);
    // Once they let go, their written pages are dropped: the next values in the same place read as sent.
    await a.ask({ t: "drop", id: "x" });
    await b.ask({ t: "drop", id: "x" });
    await emptyAgain(me);
    for (let i = 0; i < 4; i++) {
      const next = noise(4 * MiB, 500 + i);
      expect((await a.ask({ t: "take", id: "y", bytes: sendFrom(me, next) })).hash).toBe(hash(next).toString(16));
      await a.ask({ t: "drop", id: "y" });
    }
  });

  it("comes back to this process too: a view of my own block, forwarded back to me, is the same bytes", async () => {
    await using t = await setup(1);
    const { me, holders: [a] } = t;
    const value = noise(2 * MiB, 9);
    await a.ask({ t: "take", id: "x", bytes: sendFrom(me, value) });
    const link = me.link();
    // Sync steps in plain functions, the value kept in an array: an async function's frame may keep temporaries alive.
    const kept: Uint8Array[] = [];
    const receive = (bytes: Uint8Array) => kept.push((decode(bytes, { binary: link.reader }) as { value: Uint8Array }).value);
    receive((await a.ask({ t: "send", id: "x" })).bytes!);
    expect(hash(kept[0]!)).toBe(hash(value));
    await a.ask({ t: "drop", id: "x" });
    Bun.gc(true);
    expect(me.inFlight).toBe(1); // I hold it myself now
    expect(hash(kept[0]!)).toBe(hash(value));
    kept.pop();
    await emptyAgain(me);
  });

  it("lets go of a holder's references when the holder is killed with SIGKILL", async () => {
    await using t = await setup(2);
    const { me, holders: [a, b] } = t;
    const value = noise(3 * MiB, 11);
    await a.ask({ t: "take", id: "x", bytes: sendFrom(me, value) });
    await b.ask({ t: "take", id: "x", bytes: (await a.ask({ t: "send", id: "x" })).bytes! });
    // Also a reference A sent and nobody read: it dies with A.
    await a.ask({ t: "send", id: "x" });
    await a.ask({ t: "drop", id: "x" });
    Bun.gc(true);
    expect(me.inFlight).toBe(1);
    await a.kill();
    Bun.gc(true);
    expect(me.inFlight).toBe(1); // B still holds it
    expect((await b.ask({ t: "hash", id: "x" })).hash).toBe(hash(value).toString(16));
    await b.kill();
    await emptyAgain(me);
  });

  it("stays readable in every holder when its owner dies, and later sends of it are copies", async () => {
    await using t = await setup(3);
    const { me, holders: [owner, b, c] } = t;
    const made = (await owner.ask({ t: "make", id: "x", n: 5 * MiB, seed: 3 })).bytes!;
    const expected = (await owner.ask({ t: "hash", id: "x" })).hash!;
    const link = me.link();
    const mine = (decode(made, { binary: link.reader }) as { value: Uint8Array }).value;
    expect(hash(mine).toString(16)).toBe(expected);
    // I forward the owner's block to B: B opens the owner's arena from the descriptor alone.
    const before = shmStats();
    const toB = sendFrom(me, mine);
    expect(shmStats().forwards - before.forwards).toBe(1);
    expect((await b.ask({ t: "take", id: "x", bytes: toB })).hash).toBe(expected);
    await owner.kill();
    // The dead owner's file goes, and is not shrunk under the holders: reading does not fault.
    expect(me.reapDeadOwners()).toEqual([owner.arena]);
    expect(existsSync(owner.arena)).toBe(false);
    expect(hash(mine).toString(16)).toBe(expected);
    expect((await b.ask({ t: "hash", id: "x" })).hash).toBe(expected);
    // Its file can no longer be opened by name: sending it on now copies it into B's arena, and C reads that.
    const bStats = await b.ask({ t: "stats" });
    const toC = (await b.ask({ t: "send", id: "x" })).bytes!;
    expect((await b.ask({ t: "stats" })).forwards).toBe(bStats.forwards);
    expect((await c.ask({ t: "take", id: "x", bytes: toC })).hash).toBe(expected);
  });
});

describe("forwarding in one process (two arenas standing for two processes)", () => {
  /** `a` owns the block, `b` holds a view of it; `forward` sends b's view on through a fresh link of b. */
  function held() {
    const a = SharedMemory.open(options({ arenaBytes: 16 * MiB }), process.pid);
    const b = SharedMemory.open(options({ arenaBytes: 16 * MiB }), process.pid);
    opened.push(a, b);
    const lb = b.link();
    const views = [(decode(sendFrom(a, noise(MiB, 5)), { binary: lb.reader }) as { value: Uint8Array }).value];
    const forward = (link = b.link()) => {
      const bytes = encode({ value: views[0] }, { binary: link.writer });
      link.commit();
      return { bytes, link };
    };
    return { a, b, views, forward };
  }

  it("copies once a block has no free slot left: 6 references at once", async () => {
    const { a, b, views, forward } = held();
    const before = shmStats();
    // b's own hold is one reference; 5 forwards nobody read yet fill the other slots.
    const sent = Array.from({ length: 6 }, () => forward());
    expect([shmStats().forwards - before.forwards, shmStats().transfers - before.transfers, b.inFlight]).toEqual([5, 6, 1]);
    expect(sent.map((s) => hash((decode(s.bytes, { binary: a.link().reader }) as { value: Uint8Array }).value))).toEqual(Array(6).fill(hash(noise(MiB, 5))));
    views.pop();
    await emptyAgain(a);
    await emptyAgain(b);
  });

  it("drops every page a receiver wrote in a block it got twice, also when the view it let go of last showed only part of it", async () => {
    const [a, b, c] = [0, 1, 2].map(() => SharedMemory.open(options({ arenaBytes: 16 * MiB }), process.pid));
    opened.push(a!, b!, c!);
    const [lb, lc] = [b!.link(), c!.link()];
    const take = (bytes: Uint8Array, link = lb) => (decode(bytes, { binary: link.reader }) as { value: Uint8Array }).value;
    const held = [take(sendFrom(a!, noise(MiB, 1)))];
    // c gets the block twice from b: a part of it first, then all of it, and writes the last page of the whole.
    const part = [take(sendFrom(b!, held[0]!.subarray(0, 2 * T)), lc)];
    const whole = [take(sendFrom(b!, held[0]!), lc)];
    whole[0]![MiB - 1]! ^= 0xff;
    held.pop();
    whole.pop();
    await waitFor(() => (Bun.gc(true), heldViews() === 1), "all but the part to be let go");
    part.pop();
    await waitFor(() => (Bun.gc(true), heldViews() === 0 && a!.inFlight === 0), "the part to be let go too");
    // The block is given out again: c must see the new bytes on that last page, not its own old copy of it.
    const next = take(sendFrom(a!, noise(MiB, 2)), lc);
    expect(hash(next)).toEqual(hash(noise(MiB, 2)));
  });

  it("takes back a forwarded reference nobody read when its link closes", async () => {
    const { a, views, forward } = held();
    forward().link.close(); // sent, never read, and the connection is gone
    views.pop();
    await emptyAgain(a);
  });
});
