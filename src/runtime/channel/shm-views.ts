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
 * @example
 *   const bytes = receiveView(view, ref, length, skew); // held until `bytes` (and its buffer) is collected
 *   const buf = producedBuffer(arena, block, 1 << 20);      // a sharedArray's memory, unpinned when collected
 */
import { ptr, toArrayBuffer } from "bun:ffi";
import type { ArenaView, Block, OwnArena, Ref } from "./shm-arena.ts";
import { privatePages } from "./private-pages.ts";

/** A block this process holds through a received buffer: the buffer shows `length` bytes from `skew` in the block. */
export interface Held {
  view: ArenaView;
  granule: number;
  tag: number;
  /** The slot of this process's reference. */
  slot: number;
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
/** Holds per block (arena mapping, then granule): a block this process received twice shares its private pages. */
const perBlock = new Map<ArenaView, Map<number, number>>();

function letGo(h: Held): void {
  if (h.done) return;
  h.done = true;
  const set = holds.get(h.view);
  set?.delete(h);
  if (set?.size === 0) holds.delete(h.view);
  const blocks = perBlock.get(h.view)!;
  const left = blocks.get(h.granule)! - 1;
  if (left > 0) blocks.set(h.granule, left);
  else {
    blocks.delete(h.granule);
    if (blocks.size === 0) perBlock.delete(h.view);
    // Before the block goes back: pages this process wrote are its own copies, which would hide the next block there.
    if (h.view.data !== h.view.bytes) privatePages.forget(h.address - h.skew, h.skew + h.length);
  }
  h.view.letGo(h.granule, h.slot, h.length);
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
 * collects: 50 ms after views stop arriving, a young-generation collection (~0.2 ms)
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
    Bun.gc(full);
    const count = () => [...holds.values()].reduce((n, set) => n + set.size, 0);
    const before = count();
    for (const view of [...holds.keys()]) sweepViews(view);
    // Something died: more may soon. Nothing did: what is held is kept on purpose, look less often.
    sweepDelay = count() < before ? SWEEP_MS[0] : Math.min(sweepDelay * 2, SWEEP_MS[1]);
    if (holds.size > 0) sweepSoon();
  }, sweepDelay).unref();
}

/**
 * Lets go at once of every block of `view` whose buffer a collection has already found
 * unreachable, without waiting for its finalizer (SharedMemory calls it right after
 * asking for a collection, when it needs room).
 */
export function sweepViews(view: ArenaView): void {
  for (const h of [...(holds.get(view) ?? [])]) if (h.buffer.deref() === undefined) letGo(h);
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
 * every such buffer.
 */
export function receiveView(view: ArenaView, ref: Ref, length: number, skew: number): Uint8Array {
  const offset = view.hold(ref, length, skew);
  let buffer: ArrayBuffer;
  try {
    buffer = external(view.data, offset, length);
  } catch (e) {
    view.letGo(ref.granule, ref.slot, length);
    throw e;
  }
  const h: Held = { view, granule: ref.granule, tag: ref.tag, slot: ref.slot, skew, length, address: baseOf(view.data) + offset, buffer: new WeakRef(buffer), done: false };
  let blocks = perBlock.get(view);
  if (!blocks) perBlock.set(view, (blocks = new Map()));
  blocks.set(ref.granule, (blocks.get(ref.granule) ?? 0) + 1);
  received.register(buffer, h);
  heldBy.set(buffer, h);
  let set = holds.get(view);
  if (!set) holds.set(view, (set = new Set()));
  set.add(h);
  // Debounced: while views keep arriving the collections at each 16 MiB received do the work, and a
  // sweep in the middle of a call would only make its views old; the sweep runs once arrivals pause.
  if (sweepTimer !== null && sweepDelay === SWEEP_MS[0]) {
    clearTimeout(sweepTimer);
    sweepTimer = null;
  }
  if (sweepTimer === null) sweepDelay = SWEEP_MS[0];
  sweepSoon();
  return new Uint8Array(buffer);
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
