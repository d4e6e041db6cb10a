/**
 * Copy-on-write pages of a private mapping (MAP_PRIVATE) of an arena, which is
 * what makes a block safe to share between several holders: each holder reads
 * the block's pages where they lie in /dev/shm, and a write by user code gives
 * that process its own copy of the page (the kernel does it), so nobody else
 * ever sees it. Two things follow, both done here:
 *
 * - A process that wrote its view must not forward the block (its receivers
 *   would get the bytes as first sent, not as they are now): `written` tells,
 *   from /proc/self/pagemap (a written page is present and no longer the file's).
 * - When a held block is let go, the private copies of its pages are dropped
 *   (`forget`, madvise MADV_DONTNEED), or a later block given out at the same
 *   place would show this process's old bytes.
 *
 * Without either (no libc to call, no pagemap), `available` is false and
 * receivers use the shared mapping and never forward (the behaviour before).
 *
 * @example
 *   if (privatePages.available && !privatePages.written(ptr, n)) forward(); else copy();
 *   privatePages.forget(ptr, n); // before giving the block back
 */
import { openSync, readSync } from "node:fs";
import { dlopen, FFIType } from "bun:ffi";

const PAGE = 4096;
const MADV_DONTNEED = 4;
// Flags of a pagemap entry (64 bits, little-endian), as bits of its upper 32-bit word: bits 63, 62, 61.
const PRESENT = 1 << 31;
const SWAPPED = 1 << 30;
const FILE_PAGE = 1 << 29;
/** Pagemap entries read at once: a 16 MiB block's 4096 pages in one read. */
const ENTRIES = 4096;

type Madvise = (addr: number, length: number, advice: number) => number;

function loadMadvise(): Madvise | null {
  for (const name of ["libc.so.6", "libc.musl-x86_64.so.1", "libc.musl-aarch64.so.1", "libc.so"]) {
    try {
      const lib = dlopen(name, { madvise: { args: [FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i32 } });
      return (addr, length, advice) => lib.symbols.madvise(addr as never, length, advice) as number;
    } catch {}
  }
  return null;
}

function openPagemap(): number | null {
  try {
    return openSync("/proc/self/pagemap", "r");
  } catch {
    return null;
  }
}

let state: { madvise: Madvise; pagemap: number; buf: Uint8Array; words: Uint32Array } | null | undefined;

function ready() {
  if (state !== undefined) return state;
  const madvise = loadMadvise();
  const pagemap = madvise ? openPagemap() : null;
  const buf = new Uint8Array(ENTRIES * 8);
  return (state = madvise && pagemap !== null ? { madvise, pagemap, buf, words: new Uint32Array(buf.buffer) } : null);
}

/** Whether a pagemap entry (its upper word) is a page this process wrote: its own copy, in memory or swapped out. */
const isWritten = (hi: number) => (hi & SWAPPED) !== 0 || ((hi & PRESENT) !== 0 && (hi & FILE_PAGE) === 0);

/**
 * Calls `visit` for the pages of [addr, addr + length) that this process wrote (or for every page,
 * with `all`, saying whether it wrote it) until `visit` returns true; true if it did, or if the
 * page table cannot be read (then the caller must assume a write).
 */
function scan(addr: number, length: number, visit: (page: number, written: boolean) => boolean, all = false): boolean {
  const s = ready();
  if (!s) return true;
  const first = Math.floor(addr / PAGE);
  const last = Math.floor((addr + length - 1) / PAGE);
  // Plain word tests, no BigInt: this runs for every view sent on and every block let go (4096 entries for 16 MiB).
  for (let page = first; page <= last; ) {
    const n = Math.min(last - page + 1, ENTRIES);
    if (readSync(s.pagemap, s.buf, 0, n * 8, page * 8) < n * 8) return true;
    const words = s.words;
    for (let i = 0; i < n; i++) {
      const written = isWritten(words[2 * i + 1]!);
      if ((written || all) && visit(page + i, written)) return true;
    }
    page += n;
  }
  return false;
}

/** Private-mapping page bookkeeping for shared-memory views (see the file comment). */
export const privatePages = {
  /** Whether both tools work here; without them views are of the shared mapping and nothing is forwarded. */
  get available(): boolean {
    return ready() !== null;
  },

  /** Whether this process wrote any page of [addr, addr + length) in a private mapping (a page of its own now). */
  written(addr: number, length: number): boolean {
    return scan(addr, length, () => true);
  },

  /**
   * Drops this process's private copies of the pages of [addr, addr + length) it wrote: they
   * read the file again. Only those: dropping the others too would cost a fault per page on
   * the next read of a block there.
   */
  forget(addr: number, length: number): void {
    const s = ready();
    if (!s) return;
    let run = -1;
    const flush = (end: number) => {
      if (run >= 0) s.madvise(run * PAGE, (end - run) * PAGE, MADV_DONTNEED);
      run = -1;
    };
    const end = Math.floor((addr + length - 1) / PAGE) + 1;
    const unknown = scan(addr, length, (page, written) => {
      if (written && run < 0) run = page;
      else if (!written) flush(page);
      return false;
    }, true);
    if (unknown) run = Math.floor(addr / PAGE); // the page table cannot be read: drop them all
    flush(end);
  },
};
