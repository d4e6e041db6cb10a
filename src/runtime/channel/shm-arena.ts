/**
 * One process's shared-memory arena and the mappings of other processes'
 * arenas (SPEC §5). Only the owner allocates. A block may have several
 * references at once, each in a slot of the block's record: a descriptor in
 * flight (the slot holds minus the sending process's pid) or a holder (the
 * slot holds the holder's pid). A receiver turns the sender's slot into its
 * own by a compare-and-swap, and empties it when done; a process that holds a
 * block forwards it by filling another slot, so the bytes are never copied
 * again. The owner takes a block back once its reference count is 0; nobody
 * sends a message about it, and nobody ever waits for anybody.
 *
 * File layout (little-endian Int32 words, then data):
 *   [0..15]  header: magic, version, granule, granules, data offset, closed, readers, owner pid
 *   [16..]   WORDS per granule, for the block starting there:
 *            state: 0 = free, tag = allocated (the tag names this use of the block);
 *            refs: how many slots are not empty (a reference is only added by a process
 *            that holds one, so the count never rises from 0);
 *            SLOTS slots: 0 = empty, -pid = a descriptor sent by pid not yet read, pid = held by pid
 *   data     at `dataOffset` (page-aligned), `granules` × GRANULE bytes
 *
 * @example
 *   const a = OwnArena.create({ dir: "/dev/shm", name, bytes: 256 << 20 });
 *   const b = a.alloc(bytes.byteLength, null)!; a.bytes.set(bytes, b.offset); a.publish(b);
 *   // another process: ArenaView.map(path).take(b, bytes.byteLength)
 */
import { closeSync, constants, fstatSync, ftruncateSync, lstatSync, openSync, statfsSync, unlinkSync, writeSync } from "node:fs";
import { join } from "node:path";
import { processAlive } from "../process-alive.ts";
import { privatePages } from "./private-pages.ts";

export const GRANULE = 4096;
const MAGIC = 0x5342_4d31; // "SBM1"
const VERSION = 3;
const HEADER_WORDS = 16;
const [W_MAGIC, W_VERSION, W_GRANULE, W_GRANULES, W_DATA, W_CLOSED, W_READERS, W_PID] = [0, 1, 2, 3, 4, 5, 6, 7];
/** Blocks still in flight an allocation looks past, oldest first, before it settles for what it found free. */
const RECLAIM_PEEK = 8;
/** Kept free in the file system beyond a new block, so that a write never meets a full /dev/shm (SIGBUS). */
const FS_MARGIN = 1 << 20;
/**
 * After this long without a send, the pages past the last block in flight go back to /dev/shm.
 * Not sooner: writing a page /dev/shm has just taken back costs a fault (16 MiB into fresh
 * pages 11.6 ms here, into kept ones 2.0 ms: bench/payload.ts, the fresh-pages row), and a
 * server between requests a few seconds apart would pay it on every one.
 */
export const TRIM_IDLE_MS = 10_000;
/** References a block can have at once; a process that finds none free copies the value instead. */
export const SLOTS = 6;
/** Words per granule: state, refs, then the slots. */
const WORDS = 2 + SLOTS;

/** Why a value cannot be read; the Connection turns it into a 503 for that call. */
export class ShmReadError extends Error {
  override readonly name = "ShmReadError";
}

/** Index of a granule's state word; its refs word follows, then its slots. */
const stateAt = (granule: number) => HEADER_WORDS + WORDS * granule;

function layout(bytes: number): { granules: number; dataOffset: number } {
  let granules = Math.floor((bytes - HEADER_WORDS * 4) / (GRANULE + 4 * WORDS));
  const offsetOf = (n: number) => Math.ceil((HEADER_WORDS + WORDS * n) * 4 / GRANULE) * GRANULE;
  while (granules > 0 && offsetOf(granules) + granules * GRANULE > bytes) granules--;
  return { granules, dataOffset: offsetOf(Math.max(granules, 0)) };
}

/** Free bytes in the file system holding `dir`. */
export function freeBytes(dir: string): number {
  const s = statfsSync(dir);
  return Number(s.bavail) * Number(s.bsize);
}

/**
 * Opens an arena file to map or shrink it, or says why not. /dev/shm is
 * writable by every user: a name that matches ours may be a symbolic link,
 * or a hard link, to a live arena (or to any file of ours), and shrinking
 * it would make its owner's next write fault (SIGBUS). So only a regular
 * file of this user's with one name is opened, without following a link,
 * and the open file is checked to be the one looked at.
 */
export function openArenaFile(path: string): { fd: number } | { refused: string; gone: boolean } {
  const uid = process.getuid?.();
  const why = (st: { isFile(): boolean; uid: number; nlink: number }) =>
    st.isFile() ? (st.uid !== uid ? "it belongs to another user" : st.nlink !== 1 ? `it has ${st.nlink} names (a hard link)` : null) : "it is not a regular file (a link, directory or device)";
  let fd = -1;
  try {
    const before = lstatSync(path);
    const refused = why(before);
    if (refused) return { refused: `${path} is not a serve-bin arena: ${refused}`, gone: false };
    fd = openSync(path, constants.O_RDWR | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    const after = fstatSync(fd);
    if (after.ino !== before.ino || after.dev !== before.dev || why(after)) throw new Error("it was replaced while being opened");
    return { fd };
  } catch (e) {
    if (fd >= 0) closeSync(fd);
    const gone = (e as NodeJS.ErrnoException).code === "ENOENT";
    return { refused: gone ? `${path} is gone (${(e as Error).message})` : `${path} cannot be opened as an arena (${(e as Error).message})`, gone };
  }
}

/** Maps an open file: the path in /proc names the file already opened, so no link is followed. `shared: false` is copy-on-write. */
export function mapFd(fd: number, shared = true): Uint8Array {
  return Bun.mmap(`/proc/self/fd/${fd}`, { shared });
}

/** What a descriptor names: a block, its tag, and the slot of the reference it hands over (holding -from). */
export interface Ref {
  granule: number;
  tag: number;
  slot: number;
  /** The pid of the process that filled the slot. */
  from: number;
}

/** A block handed out by the owner: granule index, byte offset, size in granules, and the tag receivers must present. */
export interface Block extends Ref {
  offset: number;
  count: number;
  /** Who sent it (a connection), for reclaiming what a closed connection never delivered. */
  owner: object | null;
  /**
   * This process still refers to the block (a `sharedArray` it made): it stays reserved
   * whatever its state word says, and may be sent again once its last reader is done.
   */
  pinned?: boolean;
}

/** The arena this process owns: created once, exclusively, mode 0600; allocated from, never remapped. */
export class OwnArena {
  #bytes: Uint8Array | null = null;
  #wordsView: Int32Array | null = null;
  readonly granules: number;
  readonly dataOffset: number;
  /** Free extents [granule, count], sorted, coalesced. Private to this process. */
  readonly #free: [number, number][] = [];
  /** Blocks sent and not yet freed by their receiver, by first granule. */
  readonly #live = new Map<number, Block>();
  /** Blocks whose connection closed: reclaimed only under pressure, since their receiver may still read them. */
  readonly #orphans = new Set<Block>();
  #tag = 0;
  /** Granules below this have been written once, so their pages exist: no new file-system space is needed. */
  #touched = 0;
  #closed = false;
  #lastAlloc = 0;
  #trimTimer: ReturnType<typeof setTimeout> | null = null;

  private constructor(
    readonly path: string,
    readonly dir: string,
    readonly fd: number,
    readonly size: number,
    readonly trimIdleMs: number,
  ) {
    ({ granules: this.granules, dataOffset: this.dataOffset } = layout(size));
    // The header goes in through the file; the state words are zero in a fresh sparse file.
    const header = Int32Array.of(MAGIC, VERSION, GRANULE, this.granules, this.dataOffset, 0, 0, process.pid);
    writeSync(fd, new Uint8Array(header.buffer), 0, header.byteLength, 0);
    this.#free.push([0, this.granules]);
  }

  /**
   * The mapping, made on first use: a process that never sends a large value
   * never maps its arena. That matters beyond the address space: the engine
   * counts a mapping as heap-related memory and lets the heap grow in
   * proportion before it collects, so an idle 256 MiB mapping alone made a
   * busy proxy keep hundreds of MiB of garbage.
   */
  get bytes(): Uint8Array {
    return (this.#bytes ??= mapFd(this.fd));
  }

  get #words(): Int32Array {
    return (this.#wordsView ??= new Int32Array(this.bytes.buffer, this.bytes.byteOffset, this.dataOffset / 4));
  }

  /**
   * Creates `dir/name` exclusively (O_EXCL, 0600) with `bytes` bytes, or says why not.
   * The file is sparse: pages come into being as blocks are first written.
   */
  static create(opts: { dir: string; name: string; bytes: number; trimIdleMs?: number }): OwnArena | string {
    const { granules, dataOffset } = layout(opts.bytes);
    if (granules < 1) return `sharedMemory.arenaBytes (${opts.bytes}) is too small for even one block; use at least ${dataOffset + GRANULE * 16}`;
    let free: number;
    try {
      free = freeBytes(opts.dir);
    } catch (e) {
      return `${opts.dir} is not usable (${(e as Error).message})`;
    }
    if (free < opts.bytes) return `${opts.dir} has ${free} bytes free, less than sharedMemory.arenaBytes (${opts.bytes}); give it more room (Docker: --shm-size) or lower arenaBytes`;
    const path = join(opts.dir, opts.name);
    let fd = -1;
    try {
      fd = openSync(path, constants.O_CREAT | constants.O_EXCL | constants.O_RDWR | constants.O_NOFOLLOW, 0o600);
      ftruncateSync(fd, opts.bytes);
      return new OwnArena(path, opts.dir, fd, opts.bytes, opts.trimIdleMs ?? TRIM_IDLE_MS);
    } catch (e) {
      if (fd >= 0) {
        closeSync(fd);
        unlinkSync(path);
      }
      return `cannot create ${path} (${(e as Error).message})`;
    }
  }

  /**
   * Reserves room for `length` bytes, or null when the arena (or /dev/shm) has none: the caller sends inline.
   * A `pinned` block is this process's own until `unpin` (see Block.pinned); its state stays 0 until published.
   */
  alloc(length: number, owner: object | null, pinned = false): Block | null {
    if (this.#closed || length <= 0) return null;
    const count = Math.ceil(length / GRANULE);
    // Receivers mostly free in the order blocks were sent: a short look at the oldest usually
    // finds what is free; the full scan runs only when nothing fits.
    this.reclaim(RECLAIM_PEEK);
    let at = this.#fit(count);
    if (at < 0) {
      this.reclaim();
      at = this.#fit(count);
    }
    if (at < 0 && this.#orphans.size > 0) {
      this.#reclaimOrphans();
      at = this.#fit(count);
    }
    if (at < 0) return null;
    const end = this.#free[at]![0] + count;
    if (end > this.#touched && freeBytes(this.dir) < (end - this.#touched) * GRANULE + FS_MARGIN) return null;
    const ext = this.#free[at]!;
    const granule = ext[0];
    if (ext[1] === count) this.#free.splice(at, 1);
    else (ext[0] += count), (ext[1] -= count);
    this.#touched = Math.max(this.#touched, end);
    this.#lastAlloc = performance.now();
    this.#trimTimer ??= setTimeout(() => this.#trimWhenIdle(), this.trimIdleMs).unref();
    const block: Block = { granule, offset: this.dataOffset + granule * GRANULE, count, tag: this.#nextTag(), slot: 0, from: process.pid, owner, pinned };
    this.#live.set(granule, block);
    return block;
  }

  #nextTag(): number {
    return (this.#tag = this.#tag >= 0x7fff_ffff ? 1 : this.#tag + 1);
  }

  /** Makes a filled block readable: after these stores, a receiver presenting the tag may take the reference in slot 0. */
  publish(b: Block): void {
    const at = stateAt(b.granule);
    for (let i = 1; i <= SLOTS; i++) Atomics.store(this.#words, at + 1 + i, 0);
    Atomics.store(this.#words, at + 2, -process.pid);
    Atomics.store(this.#words, at + 1, 1);
    Atomics.store(this.#words, at, b.tag);
    b.slot = 0;
  }

  /**
   * Hands a pinned block (a sharedArray of this process) to one more reader: returns the
   * reference to send, or null when all its slots are taken (the caller copies instead).
   * Readers already holding it keep it: a block may have several at once.
   */
  republish(b: Block, owner: object | null): Ref | null {
    if (!b.pinned || this.#live.get(b.granule) !== b) return null;
    const at = stateAt(b.granule);
    if (Atomics.load(this.#words, at) !== b.tag || Atomics.load(this.#words, at + 1) === 0) {
      // Nobody refers to it (its state went back to 0 when the last reader let go): publish afresh.
      this.publish(b);
    } else {
      const slot = addRef(this.#words, b.granule);
      if (slot < 0) return null;
      b.slot = slot;
    }
    b.owner = owner;
    this.#orphans.delete(b);
    return { granule: b.granule, tag: b.tag, slot: b.slot, from: process.pid };
  }

  /** This process no longer refers to a pinned block: it is freed once no reader holds it. */
  unpin(b: Block): void {
    b.pinned = false;
    if (this.#live.get(b.granule) === b && Atomics.load(this.#words, stateAt(b.granule) + 1) === 0) this.#release(b);
  }

  /** Takes back the reference `ref` to one of this arena's blocks, sent in a message that was never sent. */
  discard(b: Block, ref: Ref): void {
    if (this.#live.get(b.granule) !== b) return;
    dropRef(this.#words, ref.granule, ref.slot, -process.pid);
    if (!b.pinned && Atomics.load(this.#words, stateAt(b.granule) + 1) === 0) this.#release(b);
  }

  /** The connection that sent these blocks closed: free them when the room is needed. */
  orphan(owner: object): void {
    for (const b of this.#live.values()) if (b.owner === owner) this.#orphans.add(b);
  }

  /**
   * Takes back the blocks nobody refers to any more, oldest first; stops after
   * meeting `peek` blocks still referred to. Cost: one atomic load per block looked at.
   * The full scan (no `peek`) also empties the slots of processes that died (a crashed
   * receiver never lets go of its views, a crashed forwarder of what it forwarded):
   * one signal-0 probe per such process.
   */
  reclaim(peek = Infinity): void {
    const words = this.#words;
    let alive: Map<number, boolean> | undefined;
    for (const b of this.#live.values()) {
      const at = stateAt(b.granule);
      let refs = Atomics.load(words, at + 1);
      if (refs > 0 && peek === Infinity) {
        for (let i = 0; i < SLOTS; i++) {
          const v = Atomics.load(words, at + 2 + i);
          const pid = Math.abs(v);
          if (pid === 0 || pid === process.pid) continue;
          alive ??= new Map();
          let ok = alive.get(pid);
          if (ok === undefined) alive.set(pid, (ok = processAlive(pid)));
          if (!ok) dropRef(words, b.granule, i, v);
        }
        refs = Atomics.load(words, at + 1);
      }
      if (b.pinned) continue; // this process's sharedArray: reserved until unpinned, whatever its references
      if (refs === 0) {
        this.#release(b);
        continue;
      }
      if (--peek <= 0) return;
    }
  }

  /** Blocks sent and not yet freed by their reader, or held by this process (orphans and pinned blocks included). */
  get inFlight(): number {
    this.reclaim();
    return this.#live.size;
  }

  /** Blocks with a descriptor in flight (sent by anyone, not yet taken), orphans aside. */
  #unread(): number {
    let n = 0;
    for (const b of this.#live.values()) {
      if (this.#orphans.has(b)) continue;
      const at = stateAt(b.granule) + 2;
      for (let i = 0; i < SLOTS; i++) {
        if (Atomics.load(this.#words, at + i) < 0) {
          n++;
          break;
        }
      }
    }
    return n;
  }

  /**
   * Nothing in the file is in use, here or elsewhere: no block is live. A pinned block counts,
   * since this process may still touch its sharedArray (shrinking the file under it would fault).
   */
  #empty(): boolean {
    return this.#live.size === 0;
  }

  /**
   * Gives the pages past the last block still in flight back to /dev/shm:
   * tmpfs keeps every page a burst wrote, for as long as the file exists,
   * so without this a server that once sent 200 MiB at once keeps 200 MiB
   * of shared memory. Shrinking the file frees them, growing it back keeps
   * the layout (the pages read as zeros until written). Only free granules
   * lie past the cut, and nobody reads a free granule's data: a receiver
   * copies a block before it frees it, and checks its tag first. Returns
   * the bytes given back.
   */
  trim(): number {
    if (this.#closed) return 0;
    this.reclaim();
    let end = 0;
    for (const b of this.#live.values()) end = Math.max(end, b.granule + b.count);
    if (end >= this.#touched) return 0;
    const freed = (this.#touched - end) * GRANULE;
    ftruncateSync(this.fd, this.dataOffset + end * GRANULE);
    ftruncateSync(this.fd, this.size);
    this.#touched = end;
    return freed;
  }

  #trimWhenIdle(): void {
    this.#trimTimer = null;
    const idle = performance.now() - this.#lastAlloc;
    if (idle < this.trimIdleMs) {
      this.#trimTimer = setTimeout(() => this.#trimWhenIdle(), this.trimIdleMs - idle).unref();
      return;
    }
    this.trim();
    // Blocks still in flight keep their pages: look again once their receivers may have read them.
    if (this.#touched > 0 && !this.#closed) this.#trimTimer = setTimeout(() => this.#trimWhenIdle(), this.trimIdleMs).unref();
  }

  #reclaimOrphans(): void {
    // A late reader of an orphan then fails its compare-and-swap and reports an error; it never sees other bytes.
    for (const b of this.#orphans) for (let i = 0; i < SLOTS; i++) dropRef(this.#words, b.granule, i, -process.pid);
    this.reclaim();
  }

  #fit(count: number): number {
    for (let i = 0; i < this.#free.length; i++) if (this.#free[i]![1] >= count) return i;
    return -1;
  }

  #release(b: Block): void {
    Atomics.store(this.#words, stateAt(b.granule), 0);
    this.#live.delete(b.granule);
    this.#orphans.delete(b);
    const free = this.#free;
    let lo = 0;
    let hi = free.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (free[mid]![0] < b.granule) lo = mid + 1;
      else hi = mid;
    }
    const prev = free[lo - 1];
    const next = free[lo];
    if (prev && prev[0] + prev[1] === b.granule) {
      prev[1] += b.count;
      if (next && prev[0] + prev[1] === next[0]) {
        prev[1] += next[1];
        free.splice(lo, 1);
      }
    } else if (next && b.granule + b.count === next[0]) {
      next[0] = b.granule;
      next[1] += b.count;
    } else free.splice(lo, 0, [b.granule, b.count]);
  }

  /**
   * Stops allocating, gives receivers up to `waitMs` to take what is in flight, then
   * unlinks the file, freeing its pages at once when nothing is left to read (see
   * `retire`). Idempotent; synchronous, so it can run in an exit handler.
   */
  close(waitMs: number): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#trimTimer) clearTimeout(this.#trimTimer);
    const until = Date.now() + waitMs;
    // Blocks readers hold as views are read already: only unread ones are worth the wait.
    while (this.#unread() > 0 && Date.now() < until) {
      Bun.sleepSync(1);
      this.reclaim();
    }
    this.reclaim();
    if (this.#bytes) retire(this.path, this.fd, this.#bytes, this.#empty());
    else retire(this.path, this.fd, new Uint8Array(0), false);
    closeSync(this.fd);
  }
}

/**
 * Unlinks an arena. When no block is left to read, it is first marked closed and
 * shrunk to its header, which frees its pages at once even while other processes
 * still map it; readers announce themselves in the header, so the shrink waits for
 * any inside a copy (one that died there only costs the shrink). When blocks are
 * left, the data stays: a receiver that has the arena mapped can still read them.
 */
export function retire(path: string, fd: number, bytes: Uint8Array, empty: boolean): void {
  const words = headerWords(bytes);
  if (empty && words && words[W_MAGIC] === MAGIC) {
    Atomics.store(words, W_CLOSED, 1);
    const until = Date.now() + 100;
    while (Atomics.load(words, W_READERS) !== 0 && Date.now() < until) Bun.sleepSync(1);
    if (Atomics.load(words, W_READERS) === 0) {
      try {
        ftruncateSync(fd, words[W_DATA]!); // the file opened, never what the name points at now
      } catch {}
    }
  }
  try {
    unlinkSync(path);
  } catch {}
}

/**
 * Whether nobody refers to any block of a mapped arena (every refs word zero; a count
 * never rises from 0): a dead owner's file can then shrink. A block a reader still holds,
 * or one still in flight, keeps its pages.
 */
export function arenaEmpty(bytes: Uint8Array): boolean {
  const head = headerWords(bytes);
  if (!head || head[W_MAGIC] !== MAGIC || head[W_VERSION] !== VERSION || bytes.byteLength < head[W_DATA]!) return false;
  const words = new Int32Array(bytes.buffer, bytes.byteOffset, stateAt(head[W_GRANULES]!));
  for (let i = HEADER_WORDS + 1; i < words.length; i += WORDS) if (Atomics.load(words, i) !== 0) return false;
  return true;
}

/**
 * Adds a reference to the block at `granule` for a descriptor this process is about to send:
 * returns the slot (now holding minus this pid), or -1 when every slot is taken. Only a process
 * that holds a reference calls it, so the count is above 0 throughout and the block stays put.
 */
function addRef(words: Int32Array, granule: number): number {
  const at = stateAt(granule);
  Atomics.add(words, at + 1, 1); // first the count: a reader emptying another slot meanwhile never sees 0
  for (let i = 0; i < SLOTS; i++) if (Atomics.compareExchange(words, at + 2 + i, 0, -process.pid) === 0) return i;
  Atomics.sub(words, at + 1, 1);
  return -1;
}

/** Empties `slot` if it still holds `value`, and counts the reference gone; false if it held something else. */
function dropRef(words: Int32Array, granule: number, slot: number, value: number): boolean {
  const at = stateAt(granule);
  if (value === 0 || Atomics.compareExchange(words, at + 2 + slot, value, 0) !== value) return false;
  Atomics.sub(words, at + 1, 1);
  return true;
}

function headerWords(bytes: Uint8Array): Int32Array | null {
  return bytes.byteLength >= HEADER_WORDS * 4 ? new Int32Array(bytes.buffer, bytes.byteOffset, HEADER_WORDS) : null;
}

/**
 * Another process's arena, mapped once and kept; a receiver copies blocks out of it and
 * frees them, or holds them (`hold`) and lets go later (`letGo`). It is mapped twice:
 * `bytes` shared (the words, and copies), `data` private (copy-on-write: the views user
 * code gets, so that its writes stay its own; see private-pages.ts).
 */
export class ArenaView {
  readonly #words: Int32Array;
  /** Bytes of blocks this process holds as views now. */
  held = 0;
  /** Bytes received as views since this process last asked for a garbage collection (SharedMemory's). */
  sinceCollect = 0;
  /** Bytes received as views since this process last ran a full collection for them. */
  sinceFull = Infinity;
  readonly #granules: number;
  readonly #dataOffset: number;

  private constructor(
    readonly path: string,
    readonly bytes: Uint8Array,
    readonly data: Uint8Array,
  ) {
    const w = headerWords(bytes)!;
    this.#granules = w[W_GRANULES]!;
    this.#dataOffset = w[W_DATA]!;
    this.#words = new Int32Array(bytes.buffer, bytes.byteOffset, Math.min(bytes.byteLength, this.#dataOffset) >> 2);
  }

  static map(path: string): ArenaView {
    let bytes: Uint8Array;
    let data: Uint8Array;
    const opened = openArenaFile(path);
    if ("refused" in opened) {
      throw new ShmReadError(opened.gone ? `the sender's shared memory ${opened.refused}; the sending process has probably exited` : `the sender's shared memory is refused: ${opened.refused}`);
    }
    try {
      bytes = mapFd(opened.fd);
      data = privatePages.available ? mapFd(opened.fd, false) : bytes;
    } catch (e) {
      throw new ShmReadError(`the sender's shared memory ${path} cannot be mapped (${(e as Error).message})`);
    } finally {
      closeSync(opened.fd);
    }
    const w = headerWords(bytes);
    if (!w || w[W_MAGIC] !== MAGIC || w[W_VERSION] !== VERSION || w[W_GRANULE] !== GRANULE) {
      throw new ShmReadError(`${path} is not a serve-bin arena of this version: both processes must run the same serve-bin`);
    }
    if (w[W_DATA]! + w[W_GRANULES]! * GRANULE > bytes.byteLength && w[W_CLOSED] === 0) {
      throw new ShmReadError(`${path} is shorter than its header says; it is corrupt`);
    }
    return new ArenaView(path, bytes, data);
  }

  /** The owner closed it with nothing left to read (or it was retired so): nothing more can be read from it. */
  get closed(): boolean {
    return Atomics.load(this.#words, W_CLOSED) !== 0;
  }

  get ownerPid(): number {
    return this.#words[W_PID]!;
  }

  /** Bytes of data the arena has room for. */
  get dataBytes(): number {
    return this.#granules * GRANULE;
  }

  /**
   * Copies `length` bytes (from `skew` on) of the block `ref` names out and lets go of the
   * reference, if the block still carries its tag and the slot still holds it. `copy: false`
   * only lets go (a message that failed to decode releases the rest of its blocks). Never
   * returns bytes of another block.
   */
  take(ref: Ref, length: number, copy = true, skew = 0): Uint8Array {
    const offset = this.hold(ref, length, skew, true);
    try {
      return copy ? this.bytes.slice(offset, offset + length) : new Uint8Array(0);
    } finally {
      this.letGo(ref.granule, ref.slot, length);
      Atomics.sub(this.#words, W_READERS, 1);
    }
  }

  /**
   * Holds the block `ref` names for this process instead of copying it: turns the sender's
   * reference into this process's, and returns the byte offset in `bytes` of its data from
   * `skew` on. The owner will not reuse it (nor shrink the file over it) until `letGo`, or
   * until it finds this process dead.
   */
  hold(ref: Ref, length: number, skew = 0, reading = false): number {
    this.#check(ref.granule, skew + length);
    if (!(ref.slot >= 0 && ref.slot < SLOTS && ref.from > 0)) throw new ShmReadError(`a shared-memory descriptor names slot ${ref.slot} of ${this.path}: the message is corrupt`);
    const w = this.#words;
    const at = stateAt(ref.granule);
    const slot = at + 2 + ref.slot;
    if (reading) Atomics.add(w, W_READERS, 1);
    try {
      if (Atomics.load(w, W_CLOSED) !== 0) throw new ShmReadError(`the sender of this value closed its shared memory before it was read (${this.path})`);
      if (Atomics.load(w, at) !== ref.tag) throw stale(this.path);
      if (Atomics.compareExchange(w, slot, -ref.from, process.pid) !== -ref.from) throw stale(this.path);
      // The slot can only have held -from for another use of the block if the block was freed and given
      // out again in between, under a new tag: look again, and hand that reference back untouched.
      if (Atomics.load(w, at) !== ref.tag) {
        Atomics.compareExchange(w, slot, process.pid, -ref.from);
        throw stale(this.path);
      }
    } catch (e) {
      if (reading) Atomics.sub(w, W_READERS, 1);
      throw e;
    }
    this.held += length;
    return this.#dataOffset + ref.granule * GRANULE + skew;
  }

  /** Gives back the reference in `slot` that `hold` took: the owner reuses the block once nobody refers to it. */
  letGo(granule: number, slot: number, length: number): void {
    this.held -= length;
    dropRef(this.#words, granule, slot, process.pid);
  }

  /**
   * Adds a reference to a block this process holds, for a descriptor it is about to send
   * on (forwarding without a copy): the slot, or -1 when none is free or the owner has
   * closed or exited (the receiver could not open the file then; the caller copies).
   */
  forward(granule: number): number {
    if (Atomics.load(this.#words, W_CLOSED) !== 0 || !processAlive(this.ownerPid)) return -1;
    return addRef(this.#words, granule);
  }

  /** Whether the reference `forward` put in `slot` is still unread. */
  unread(granule: number, slot: number): boolean {
    return Atomics.load(this.#words, stateAt(granule) + 2 + slot) === -process.pid;
  }

  /** Takes back a reference `forward` added whose message was never sent, or never read. */
  unforward(granule: number, slot: number): boolean {
    return dropRef(this.#words, granule, slot, -process.pid);
  }

  #check(granule: number, length: number): void {
    if (!(granule >= 0 && length > 0 && granule + Math.ceil(length / GRANULE) <= this.#granules)) {
      throw new ShmReadError(`a shared-memory descriptor points outside ${this.path}: the message is corrupt`);
    }
  }
}

const stale = (path: string) =>
  new ShmReadError(`a shared-memory value in ${path} was already read or reclaimed (a descriptor is good for one read); the message was delivered twice or too late`);
