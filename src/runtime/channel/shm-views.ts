/**
 * JavaScript buffers over shared-memory blocks, and their lifetimes. Each
 * buffer spans exactly one block (`bun:ffi`'s toArrayBuffer over the mapped
 * arena), so nothing reachable from it shows another block, and a
 * FinalizationRegistry gives the block back once the garbage collector finds
 * the buffer unreachable (or sooner, `sweepViews`: a WeakRef is cleared by the
 * collection itself, while finalizers run some time later). Every typed array
 * or DataView of a buffer keeps the buffer alive, so "the block is held while
 * anything refers to its bytes" needs no help from user code.
 *
 * The one way to outlive the buffer with its memory is to move the memory to
 * another buffer (`transfer`). `ArrayBuffer.prototype.transfer` and
 * `transferToFixedLength` are therefore wrapped, for these buffers only, to
 * hand out a copy; structuredClone and postMessage with a transfer list are
 * not covered (README: copy with `.slice()` first).
 *
 * A process that sends on a buffer it received this way names the same block
 * (`heldBlock`) rather than copying it: the block then has two holders, and goes
 * back to its owner when both have let go.
 *
 * A process holds a block through one reference (one slot of the block's record)
 * however many of its buffers show it: a block that comes back while still held
 * (the same array sent every call) gives its new reference back at once, so a
 * block's few slots are never filled by one process's not yet collected buffers.
 * Those buffers share this process's private pages of the block; a block this
 * process has written comes back as a copy instead, so that a new value shows
 * the bytes its sender sent.
 *
 * @example
 *   const bytes = receiveView(view, ref, length, skew); // held until `bytes` (and its buffer) is collected
 *   const buf = producedBuffer(arena, block, 1 << 20);      // a sharedArray's memory, unpinned when collected
 */
import { ptr, toArrayBuffer } from "bun:ffi";
import { edenGC } from "bun:jsc";
import type { ArenaView, Block, OwnArena, Ref } from "./shm-arena.ts";
import { privatePages } from "./private-pages.ts";

/** This process's one reference to a block of another process's arena, shared by every buffer of it. */
interface BlockHold {
  granule: number;
  tag: number;
  /** The slot of this process's reference. */
  slot: number;
  /** Bytes counted in the view's `held` for it (the first buffer's length). */
  counted: number;
  /** Address of the block's first byte in the view's private mapping. */
  start: number;
  /** Bytes from the block's start that some buffer of it showed: what `forget` must cover. */
  extent: number;
  /** Buffers of it not yet let go. */
  buffers: number;
}

/** A block this process holds through a received buffer: the buffer shows `length` bytes from `skew` in the block. */
export interface Held {
  view: ArenaView;
  block: BlockHold;
  granule: number;
  tag: number;
  skew: number;
  length: number;
  /** Address of the buffer's first byte (in the view's private mapping). */
  address: number;
  buffer: WeakRef<ArrayBuffer>;
  done: boolean;
}
interface Produced {
  arena: OwnArena;
  block: Block;
}

/** Buffers whose memory is an arena's: `transfer` copies them instead of moving the memory. */
const guarded = new WeakSet<ArrayBuffer>();
const received = new FinalizationRegistry<Held>(letGo);
/** The blocks held as views, per arena mapping (only mappings with some). */
const holds = new Map<ArenaView, Set<Held>>();
/** Received buffers, to their hold: sending one on forwards its block. */
const heldBy = new WeakMap<ArrayBuffer, Held>();
/** This process's references, per arena mapping and granule. */
const perBlock = new Map<ArenaView, Map<number, BlockHold>>();

function letGo(h: Held): void {
  if (h.done) return;
  h.done = true;
  const set = holds.get(h.view);
  set?.delete(h);
  if (set?.size === 0) holds.delete(h.view);
  const b = h.block;
  if (--b.buffers > 0) return;
  const blocks = perBlock.get(h.view)!;
  blocks.delete(b.granule);
  if (blocks.size === 0) perBlock.delete(h.view);
  // Before the block goes back: pages this process wrote are its own copies, which would hide the next block there.
  if (h.view.data !== h.view.bytes) privatePages.forget(b.start, b.extent);
  h.view.letGo(b.granule, b.slot, b.counted);
}

/** First delay of the deferred sweep, and its longest (it doubles while views stay held). */
const SWEEP_MS = [50, 1000] as const;
/** A sweep this late is a full collection (a view may have aged out of the young generation), one per FULL_EVERY_MS at most. */
const FULL_AFTER_MS = 1000;
const FULL_EVERY_MS = 10_000;
let sweepTimer: ReturnType<typeof setTimeout> | null = null;
let sweepDelay: number = SWEEP_MS[0];
let lastFull = -Infinity;

/**
 * A value is usually dead soon after its call ends, long before the process next
 * collects: 50 ms after views stop arriving, a young-generation collection (0.4-2 ms)
 * and a sweep give its block back, so that its sender can reuse it (and a sharedArray
 * can be sent again without a copy) even when no further value arrives. Not sooner: a
 * view alive during a collection becomes old, and only a full collection (10-40 ms in
 * a replica here) finds an old one dead. While views stay held the sweeps back off, to
 * one a second at most, and one a second late or later is a full collection, at most
 * one per 10 s (a process that keeps a view on purpose must not pay for full
 * collections all the time); none run while nothing is held.
 */
function sweepSoon(): void {
  if (sweepTimer !== null) return;
  sweepTimer = setTimeout(() => {
    sweepTimer = null;
    if (holds.size === 0) return;
    const full = sweepDelay >= FULL_AFTER_MS && performance.now() - lastFull >= FULL_EVERY_MS;
    if (full) lastFull = performance.now();
    const before = heldViews();
    collectViews(full);
    // Something died: more may soon. Nothing did: what is held is kept on purpose, look less often.
    sweepDelay = heldViews() < before ? SWEEP_MS[0] : Math.min(sweepDelay * 2, SWEEP_MS[1]);
    if (holds.size > 0) sweepSoon();
  }, sweepDelay).unref();
}

/** Lets go at once of every block of `view` whose buffer a collection has already found unreachable, without waiting for its finalizer. */
function sweepViews(view: ArenaView): void {
  for (const h of [...(holds.get(view) ?? [])]) if (h.buffer.deref() === undefined) letGo(h);
}

/**
 * Runs a collection now, of the young generation only unless `full`, and lets go of every
 * view it found unreachable. Synchronous: `Bun.gc(false)` only asks for one, which mostly
 * runs later (a WeakRef of a dead young object was still set right after it in 29 of 30
 * tries here), so nothing could be let go right after it.
 */
export function collectViews(full: boolean): void {
  if (full) Bun.gc(true);
  else edenGC();
  for (const view of [...holds.keys()]) sweepViews(view);
}

const produced = new FinalizationRegistry<Produced>((p) => p.arena.unpin(p.block));
const own = new WeakMap<ArrayBuffer, Produced>();
const bases = new WeakMap<Uint8Array, number>();

function baseOf(mapping: Uint8Array): number {
  let base = bases.get(mapping);
  if (base === undefined) bases.set(mapping, (base = ptr(mapping)));
  return base;
}

/** A buffer over `length` bytes at `offset` of a mapping (the mapping stays alive as long as the caller keeps it). */
function external(mapping: Uint8Array, offset: number, length: number): ArrayBuffer {
  guardTransfer();
  const buffer = toArrayBuffer(baseOf(mapping), offset, length) as ArrayBuffer;
  guarded.add(buffer);
  return buffer;
}

/**
 * Holds the block `ref` names in another process's arena and returns its `length` bytes from
 * `skew` on without a copy. The registry's record refers to `view`, so the mapping outlives
 * every such buffer. A block this process holds already is not held twice (see the file
 * comment); if this process wrote it meanwhile, the value comes as a copy of the sender's bytes.
 */
export function receiveView(view: ArenaView, ref: Ref, length: number, skew: number): Uint8Array {
  let blocks = perBlock.get(view);
  const again = blocks?.get(ref.granule);
  if (again !== undefined && again.tag === ref.tag) return receiveAgain(view, again, ref, length, skew);
  const offset = view.hold(ref, length, skew);
  let buffer: ArrayBuffer;
  try {
    buffer = external(view.data, offset, length);
  } catch (e) {
    view.letGo(ref.granule, ref.slot, length);
    throw e;
  }
  const start = baseOf(view.data) + offset - skew;
  const block: BlockHold = { granule: ref.granule, tag: ref.tag, slot: ref.slot, counted: length, start, extent: skew + length, buffers: 0 };
  if (!blocks) perBlock.set(view, (blocks = new Map()));
  blocks.set(ref.granule, block);
  return track(view, block, buffer, skew, length);
}

/** A block this process holds already came again: its new reference goes back at once (the block stays held by the first). */
function receiveAgain(view: ArenaView, block: BlockHold, ref: Ref, length: number, skew: number): Uint8Array {
  const written = view.data !== view.bytes && privatePages.written(block.start, Math.max(block.extent, skew + length));
  // Take (validating the descriptor) and give back; or copy out of the shared mapping, which never shows this process's writes.
  if (written) return view.take(ref, length, true, skew);
  const offset = view.hold(ref, length, skew);
  view.letGo(ref.granule, ref.slot, length);
  const buffer = external(view.data, offset, length);
  block.extent = Math.max(block.extent, skew + length);
  return track(view, block, buffer, skew, length);
}

function track(view: ArenaView, block: BlockHold, buffer: ArrayBuffer, skew: number, length: number): Uint8Array {
  block.buffers++;
  const h: Held = { view, block, granule: block.granule, tag: block.tag, skew, length, address: block.start + skew, buffer: new WeakRef(buffer), done: false };
  received.register(buffer, h);
  heldBy.set(buffer, h);
  let set = holds.get(view);
  if (!set) holds.set(view, (set = new Set()));
  set.add(h);
  // Debounced: while views keep arriving the collections at each 64 MiB received do the work, and a
  // sweep in the middle of a call would only make its views old; the sweep runs once arrivals pause.
  if (sweepTimer !== null && sweepDelay === SWEEP_MS[0]) {
    clearTimeout(sweepTimer);
    sweepTimer = null;
  }
  if (sweepTimer === null) sweepDelay = SWEEP_MS[0];
  sweepSoon();
  return new Uint8Array(buffer);
}

/** Buffers `receiveView` made that this process has not let go of yet (for tests and diagnostics). */
export function heldViews(): number {
  let n = 0;
  for (const set of holds.values()) n += set.size;
  return n;
}

/** Whether `bytes` is a view `receiveView` made (not a copy it handed out instead). */
export function isView(bytes: Uint8Array): boolean {
  return heldBy.has(bytes.buffer as ArrayBuffer);
}

/**
 * The hold behind a buffer `receiveView` made, if `bytes` lies in one this process still holds
 * and has not written to (a page it wrote is its own copy: its receivers would not see it).
 */
export function heldBlock(bytes: Uint8Array): Held | undefined {
  const h = heldBy.get(bytes.buffer as ArrayBuffer);
  if (!h || h.done || h.view.data === h.view.bytes) return undefined;
  return privatePages.written(h.address + bytes.byteOffset, bytes.byteLength) ? undefined : h;
}

/** A zeroed buffer over a pinned block of this process's arena; the block is unpinned when the buffer is collected. */
export function producedBuffer(arena: OwnArena, block: Block, length: number): ArrayBuffer {
  const buffer = external(arena.bytes, block.offset, length);
  new Uint8Array(buffer).fill(0); // a reused block holds an earlier value's bytes
  const p = { arena, block };
  own.set(buffer, p);
  produced.register(buffer, p);
  return buffer;
}

/** The pinned block of `arena` that `buffer` (made by producedBuffer) lies in, if any. */
export function producedBlock(arena: OwnArena, buffer: ArrayBufferLike): Block | undefined {
  const p = own.get(buffer as ArrayBuffer);
  return p?.arena === arena ? p.block : undefined;
}

let wrapped = false;

function guardTransfer(): void {
  if (wrapped) return;
  wrapped = true;
  const proto = ArrayBuffer.prototype as unknown as Record<string, unknown>;
  for (const name of ["transfer", "transferToFixedLength"]) {
    const original = proto[name] as ((this: ArrayBuffer, n?: number) => ArrayBuffer) | undefined;
    if (typeof original !== "function") continue;
    Object.defineProperty(proto, name, {
      configurable: true,
      writable: true,
      value: function (this: ArrayBuffer, newLength?: number): ArrayBuffer {
        if (!guarded.has(this)) return original.call(this, newLength);
        const n = newLength === undefined ? this.byteLength : newLength;
        const out = new ArrayBuffer(n);
        new Uint8Array(out).set(new Uint8Array(this, 0, Math.min(n, this.byteLength)));
        // Detach as transfer must; the buffer that takes the memory is dropped here, unreachable.
        original.call(this);
        return out;
      },
    });
  }
}
