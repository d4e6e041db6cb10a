/**
 * Large binary values between processes through shared memory (SPEC §5). The
 * codec hands each value of at least `thresholdBytes` to the writer, which
 * copies it into this process's arena (or, for a `sharedArray` made there,
 * just names it) and returns a small descriptor (arena file, block, tag, the
 * slot of the reference it hands over, length); the receiver maps that arena
 * once and holds the block: the value it decodes is a view of the sender's
 * bytes, not a copy. A value that is itself such a view, sent on, names the
 * same block in the same arena (forwarding): the block then has several
 * holders, and goes back to its owner when the last lets go. The descriptor
 * names the arena file, so a receiver that never talked to the block's owner
 * opens it (with the same checks: a regular file of this user's, one name,
 * no link followed).
 *
 * The lifetime rule: a received view stays valid, and its bytes unchanged, for
 * as long as anything in the receiving process refers to it (the value, any
 * view of its buffer, the buffer). Its block goes back to the sender only
 * after the garbage collector has found it unreachable (a FinalizationRegistry
 * frees it with a compare-and-swap, no message); a receiver that dies lets go
 * of everything (the sender takes back blocks of dead holders). So that a slow
 * collector cannot fill a sender's arena, a receiver holds at most half of it
 * and copies beyond that; while it holds views it runs a young-generation
 * collection after every 64 MiB it receives (a full one only at the limit),
 * letting go at once of what the collection found unreachable, and it sweeps
 * on its own 50 ms after a receipt (see shm-views.ts). When the arena is full the
 * value goes inline through the socket, and `shmStats().fallbacks` counts it.
 *
 * @example
 *   const shm = SharedMemory.open({ enabled: true, thresholdBytes: 16384, arenaBytes: 256 << 20, dir: "/dev/shm" }, serverPid);
 *   new Connection(socket, handlers, shm); // or new RemoteInvoker(shm)
 *   process.on("exit", () => shm.close()); // done by open() already
 */
import { closeSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { setSharedBufferSource } from "../../api/shared-array.ts";
import type { BinaryReader, BinaryWriter } from "../../wire/codec.ts";
import type { BinaryChannel, BinaryLink } from "./connection.ts";
import { ArenaView, arenaEmpty, mapFd, openArenaFile, OwnArena, retire, ShmReadError, type Ref } from "./shm-arena.ts";
import { collectViews, heldBlock, isView, producedBlock, producedBuffer, receiveView } from "./shm-views.ts";
import { processAlive } from "../process-alive.ts";

export interface SharedMemoryOptions {
  enabled: boolean;
  thresholdBytes: number;
  arenaBytes: number;
  /** Where arena files live: /dev/shm. */
  dir: string;
}

/** Counters of this process's sends, for /metrics. */
export interface ShmStats {
  /** Values sent through shared memory. */
  transfers: number;
  /** Their bytes. */
  bytes: number;
  /** Values at or above the threshold that went inline because the arena (or /dev/shm) was full. */
  fallbacks: number;
  /** Of the transfers, `sharedArray`s sent without a copy. */
  zeroCopy: number;
  /** Of the transfers, received views sent on without a copy (a reference to the same block). */
  forwards: number;
  /** Values received as views of a sender's arena. */
  views: number;
  /** Values received as copies: this process already held half of the sender's arena, or had written the block it held already. */
  copies: number;
}

const stats: ShmStats = { transfers: 0, bytes: 0, fallbacks: 0, zeroCopy: 0, forwards: 0, views: 0, copies: 0 };

/**
 * This process's shared-memory counters (every SharedMemory in it together).
 * @example shmStats() // { transfers: 12, bytes: 201326592, fallbacks: 0 }
 */
export function shmStats(): ShmStats {
  return { ...stats };
}

/**
 * Bytes received as views between two young-generation collections, at most (a quarter of a
 * smaller arena). A collection costs 0.5-2 ms in a replica here, on the path of the value that
 * asks for it; once per 64 MiB it is a fraction of what the bytes cost, and the blocks it gives
 * back are few enough that the sender keeps reusing the same pages (bench/payload.ts).
 */
const COLLECT_EVERY = 64 << 20;
/** How long an exiting process lets receivers take what it sent before it frees its arena. */
const EXIT_WAIT_MS = 200;
/** How often the server's process looks for arenas of replicas that died without cleaning up. */
const REAP_EVERY_MS = 10_000;
const NAME = /^serve-bin-(\d+)-(\d+)-[0-9a-z]+$/;
const ascii = new TextDecoder();
/** Descriptor: tag u32, granule u32, length f64, from u32, slot u32, skew u32, then the arena's file name. */
const DESCRIPTOR_HEAD = 28;
/** Forwarded references a link remembers after sending, to take back those never read when it closes. */
const FORWARDS_KEPT = 256;

/** A reference put in a message: `undo` takes it back if the message is never sent; `forwarded` marks one to a block of another arena. */
interface Put {
  descriptor: Uint8Array;
  undo: () => void;
  forwarded?: { view: ArenaView; granule: number; slot: number };
}


/** A process's shared memory: its own arena (when there is room), and the arenas of senders it has read from. */
export class SharedMemory implements BinaryChannel {
  readonly thresholdBytes: number;
  /** Present when this process can send through shared memory; absent, every value goes inline. */
  readonly writer?: BinaryWriter;
  /** Always present: a process without an arena of its own still reads what others send. */
  readonly reader: BinaryReader;
  #arena: OwnArena | null;
  #name: Uint8Array;
  readonly #views = new Map<string, ArenaView>();
  /** Encoded file names of mapped arenas, for descriptors that forward their blocks. */
  readonly #names = new WeakMap<ArenaView, Uint8Array>();
  readonly #reaper: ReturnType<typeof setInterval> | null = null;
  readonly #onExit = () => this.close();
  readonly #source = (bytes: number) => this.sharedBuffer(bytes);
  #closed = false;

  private constructor(
    readonly opts: SharedMemoryOptions,
    readonly serverPid: number,
    arena: OwnArena | null,
  ) {
    this.thresholdBytes = opts.thresholdBytes;
    this.#arena = arena;
    this.#name = new TextEncoder().encode(arena ? arena.path.slice(opts.dir.length + 1) : "");
    if (arena) {
      this.writer = { thresholdBytes: this.thresholdBytes, put: (bytes) => this.#put(bytes, null)?.descriptor ?? null };
      setSharedBufferSource(this.#source);
    }
    this.reader = { get: (d) => this.#take(d, true) };
    if (serverPid === process.pid) this.#reaper = setInterval(() => this.reapDeadOwners(), REAP_EVERY_MS).unref();
    process.on("exit", this.#onExit);
  }

  /**
   * Maps this process's arena, once: `serve-bin-<server pid>-<pid>-<random>` in `opts.dir`,
   * created exclusively with mode 0600. When /dev/shm lacks room for it, or
   * `enabled` is false, the process sends everything inline (one warning line
   * for the former). The arena is freed and unlinked by `close()`, which also
   * runs when the process exits.
   */
  static open(opts: SharedMemoryOptions, serverPid: number, warn: (line: string) => void = (l) => console.warn(l)): SharedMemory {
    if (!opts.enabled) return new SharedMemory(opts, serverPid, null);
    const rand = [...crypto.getRandomValues(new Uint32Array(2))].map((n) => n.toString(36)).join("");
    const made = OwnArena.create({ dir: opts.dir, name: `serve-bin-${serverPid}-${process.pid}-${rand}`, bytes: opts.arenaBytes });
    if (typeof made === "string") {
      warn(`serve-bin: shared memory is off in process ${process.pid}: ${made}; large binary values go through the socket instead`);
      return new SharedMemory(opts, serverPid, null);
    }
    return new SharedMemory(opts, serverPid, made);
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The arena file this process sends from, if any. */
  get arenaPath(): string | null {
    return this.#arena?.path ?? null;
  }

  /** Blocks sent and not yet read. */
  get inFlight(): number {
    return this.#arena?.inFlight ?? 0;
  }

  /** One connection's side: its blocks are freed if the message is never sent, and reclaimable once it closes. */
  link(): BinaryLink {
    const pending: Put[] = [];
    /** References this link forwarded (blocks of other arenas), possibly still unread. */
    let forwarded: NonNullable<Put["forwarded"]>[] = [];
    const arena = () => this.#arena;
    const link: BinaryLink = {
      reader: this.reader,
      releaser: { get: (d) => this.#release(d) },
      commit: () => {
        if (pending.length === 0) return; // most messages carry no shared-memory value: nothing to do
        for (const p of pending) if (p.forwarded) forwarded.push(p.forwarded);
        pending.length = 0;
        if (forwarded.length > FORWARDS_KEPT) forwarded = forwarded.filter((f) => f.view.unread(f.granule, f.slot));
        if (forwarded.length > FORWARDS_KEPT) forwarded.splice(0, forwarded.length - FORWARDS_KEPT);
      },
      abort: () => {
        for (const p of pending) p.undo();
        pending.length = 0;
      },
      close: () => {
        link.abort();
        arena()?.orphan(link);
        // Nobody will read what went out on this link: its forwarded references would keep their blocks for as long as this process lives.
        for (const f of forwarded) f.view.unforward(f.granule, f.slot);
        forwarded = [];
      },
    };
    if (this.#arena) {
      link.writer = {
        thresholdBytes: this.thresholdBytes,
        put: (bytes) => {
          const d = this.#put(bytes, link);
          if (d) pending.push(d);
          return d?.descriptor ?? null;
        },
      };
    }
    return link;
  }

  /**
   * A zeroed buffer of `bytes` bytes in this process's arena, for `sharedArray`: sending a
   * view of it from its start names its block instead of copying. Null below the threshold,
   * without an arena, or when the arena has no room (counted as a fallback).
   */
  sharedBuffer(bytes: number): ArrayBuffer | null {
    const arena = this.#arena;
    if (!arena || bytes < this.thresholdBytes) return null;
    const block = arena.alloc(bytes, null, true);
    if (!block) {
      stats.fallbacks++;
      return null;
    }
    return producedBuffer(arena, block, bytes);
  }

  #put(bytes: Uint8Array, owner: object | null): Put | null {
    const arena = this.#arena;
    if (!arena) return null; // closed: the process is on its way out
    // A view this process received (or forwarded to it) goes on as a reference to the same block.
    const held = heldBlock(bytes);
    const slot = held ? held.view.forward(held.granule) : -1;
    if (held && slot >= 0) {
      const { view, granule } = held;
      const ref: Ref = { granule, tag: held.tag, slot, from: process.pid };
      const name = this.#names.get(view) ?? new TextEncoder().encode(view.path.slice(view.path.lastIndexOf("/") + 1));
      this.#names.set(view, name);
      this.#count(bytes, "forwards");
      return { descriptor: this.#descriptor(name, ref, bytes.byteLength, held.skew + bytes.byteOffset), undo: () => view.unforward(granule, slot), forwarded: { view, granule, slot } };
    }
    // A sharedArray of this process goes as it lies, to any number of readers at once.
    const mine = producedBlock(arena, bytes.buffer);
    const ref = mine ? arena.republish(mine, owner) : null;
    if (mine && ref) {
      this.#count(bytes, "zeroCopy");
      return { descriptor: this.#descriptor(this.#name, ref, bytes.byteLength, bytes.byteOffset), undo: () => arena.discard(mine, ref) };
    }
    const block = arena.alloc(bytes.byteLength, owner);
    if (!block) {
      stats.fallbacks++;
      return null;
    }
    arena.bytes.set(bytes, block.offset);
    arena.publish(block);
    this.#count(bytes);
    return { descriptor: this.#descriptor(this.#name, block, bytes.byteLength, 0), undo: () => arena.discard(block, block) };
  }

  #count(bytes: Uint8Array, kind?: "forwards" | "zeroCopy"): void {
    stats.transfers++;
    stats.bytes += bytes.byteLength;
    if (kind) stats[kind]++;
  }

  #descriptor(name: Uint8Array, ref: Ref, length: number, skew: number): Uint8Array {
    const d = new Uint8Array(DESCRIPTOR_HEAD + name.byteLength);
    const v = new DataView(d.buffer);
    v.setUint32(0, ref.tag, true);
    v.setUint32(4, ref.granule, true);
    v.setFloat64(8, length, true);
    v.setUint32(16, ref.from, true);
    v.setUint32(20, ref.slot, true);
    v.setUint32(24, skew, true);
    d.set(name, DESCRIPTOR_HEAD);
    return d;
  }

  /** Reads a value: a view held until collected (see the lifetime rule above), a copy past the holding limit, or (`read` false) frees it unread. */
  #take(d: Uint8Array, read: boolean): Uint8Array {
    if (d.byteLength <= DESCRIPTOR_HEAD) throw new ShmReadError("a shared-memory descriptor is truncated: the message is corrupt");
    const v = new DataView(d.buffer, d.byteOffset, d.byteLength);
    const name = ascii.decode(d.subarray(DESCRIPTOR_HEAD));
    const m = NAME.exec(name);
    if (!m || Number(m[1]) !== this.serverPid) throw new ShmReadError(`a shared-memory descriptor names "${name}", which is not an arena of this server`);
    const view = this.#view(name);
    const ref: Ref = { tag: v.getUint32(0, true), granule: v.getUint32(4, true), from: v.getUint32(16, true), slot: v.getUint32(20, true) };
    const [length, skew] = [v.getFloat64(8, true), v.getUint32(24, true)];
    if (!read) return view.take(ref, length, false, skew);
    const eighth = view.dataBytes / 8;
    // Views die when the collector runs, which a heap that allocates little rarely asks for. While views
    // are held, run a young-generation collection once per COLLECT_EVERY received (or per quarter of a
    // smaller arena), before this value's view exists, and let go at once of what it found dead: the
    // sender then reuses the same blocks, whose pages exist already (a first write to a /dev/shm page
    // costs more than the copy itself). A view that lived through an earlier collection is old and only
    // a full one (10-40 ms in a replica here) finds it dead: that runs when this value would not fit
    // under the limit otherwise, unless one ran less than an eighth of the arena ago (views kept on
    // purpose must not cost a full collection per value; past the limit they are copies).
    view.sinceCollect += length;
    view.sinceFull += length;
    const full = view.held + length > 4 * eighth && view.sinceFull >= eighth;
    if (view.held > 0 && (full || view.sinceCollect >= Math.min(2 * eighth, COLLECT_EVERY))) {
      view.sinceCollect = 0;
      if (full) view.sinceFull = 0;
      collectViews(full);
    }
    if (view.held + length > 4 * eighth) {
      stats.copies++;
      return view.take(ref, length, true, skew);
    }
    const bytes = receiveView(view, ref, length, skew);
    stats[isView(bytes) ? "views" : "copies"]++;
    return bytes;
  }

  /** Frees a block without reading it; one already freed is fine. */
  #release(d: Uint8Array): Uint8Array {
    try {
      this.#take(d, false);
    } catch {}
    return new Uint8Array(0);
  }

  #view(name: string): ArenaView {
    let view = this.#views.get(name);
    if (!view) {
      // A new sender often means an old one went away: drop mappings of arenas whose owner
      // closed or died, so that they are unmapped and their pages freed.
      for (const [n, old] of this.#views) if (old.closed || !processAlive(old.ownerPid)) this.#views.delete(n);
      view = ArenaView.map(join(this.opts.dir, name));
      this.#views.set(name, view);
    }
    return view;
  }

  /**
   * In the server's process: retires arenas of this server whose owner died
   * without cleaning up (kill -9, a crash), shrinking them first when nothing
   * in them is left to read. Returns the paths removed.
   */
  reapDeadOwners(): string[] {
    const removed: string[] = [];
    let names: string[];
    try {
      names = readdirSync(this.opts.dir);
    } catch {
      return removed;
    }
    for (const name of names) {
      const m = NAME.exec(name);
      if (!m || Number(m[1]) !== this.serverPid || Number(m[2]) === process.pid || processAlive(Number(m[2]))) continue;
      const path = join(this.opts.dir, name);
      // Only a regular file of ours with one name: a link to a live arena must never be shrunk or unlinked.
      const opened = openArenaFile(path);
      if ("refused" in opened) continue;
      this.#views.delete(name);
      try {
        let bytes: Uint8Array = new Uint8Array(0);
        try {
          bytes = mapFd(opened.fd);
        } catch {} // empty: nothing to shrink, just unlink
        retire(path, opened.fd, bytes, bytes.byteLength > 0 && arenaEmpty(bytes));
      } finally {
        closeSync(opened.fd);
      }
      removed.push(path);
    }
    return removed;
  }

  /** Frees and unlinks this process's arena (receivers get up to 200 ms to take what is in flight); idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    process.off("exit", this.#onExit);
    if (this.#arena) setSharedBufferSource(null, this.#source);
    if (this.#reaper) clearInterval(this.#reaper);
    this.#arena?.close(EXIT_WAIT_MS);
    this.#arena = null; // the mapping can go once nothing refers to it
    if (this.serverPid === process.pid) this.reapDeadOwners();
    this.#views.clear();
  }
}

let processShared: SharedMemory | null = null;

/**
 * The server process's SharedMemory, opened on first use (one arena per process;
 * its RemoteInvokers all share it). `closeProcessSharedMemory()` at Server.stop.
 * @example new RemoteInvoker(processSharedMemory(config.sharedMemory))
 */
export function processSharedMemory(opts: SharedMemoryOptions): SharedMemory {
  if (!processShared || processShared.closed) processShared = SharedMemory.open(opts, process.pid);
  return processShared;
}

/** Frees and unlinks the server process's arena, and any left by replicas that died. */
export function closeProcessSharedMemory(): void {
  processShared?.close();
  processShared = null;
}
