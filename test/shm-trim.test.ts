/**
 * Issue 17 item 10 (shared memory after a burst), at the arena itself: tmpfs
 * keeps every page written until the file shrinks. `trim()` gives back the
 * pages past the last block in flight, and never the data of a block still
 * to be read; the idle timer does it on its own.
 */
import { describe, expect, it } from "vitest";
import { statSync } from "node:fs";
import { ArenaView, OwnArena } from "../src/runtime/channel/shm-arena.ts";
import { waitFor } from "./harness.ts";

const MiB = 1 << 20;
const held = (path: string) => statSync(path).blocks * 512;

function arena(trimIdleMs?: number): OwnArena {
  const made = OwnArena.create({ dir: "/dev/shm", name: `serve-bin-${process.pid}-${process.pid}-trim${Math.random().toString(36).slice(2)}`, bytes: 32 * MiB, trimIdleMs });
  if (typeof made === "string") throw new Error(made);
  return made;
}

function send(a: OwnArena, bytes: Uint8Array) {
  const b = a.alloc(bytes.byteLength, null)!;
  a.bytes.set(bytes, b.offset);
  a.publish(b);
  return b;
}

describe("an arena gives back the pages a burst wrote", () => {
  it("trim() frees the pages past the last block in flight and keeps that block's bytes readable", () => {
    const a = arena();
    try {
      const view = ArenaView.map(a.path);
      const kept = send(a, new Uint8Array(64 * 1024).fill(1));
      const burst = Array.from({ length: 16 }, (_, i) => send(a, new Uint8Array(MiB).fill(i + 2)));
      for (const [i, b] of burst.entries()) expect(view.take(b, MiB)[0]).toBe(i + 2);
      const peak = held(a.path);
      expect(peak).toBeGreaterThan(16 * MiB);
      expect(a.trim()).toBe(16 * MiB);
      expect(held(a.path)).toBeLessThan(peak - 15 * MiB);
      expect(statSync(a.path).size).toBe(32 * MiB); // same layout: the file grew back to its size
      expect(view.take(kept, 64 * 1024)).toEqual(new Uint8Array(64 * 1024).fill(1));
      // Sending again after a trim works, into pages that come back on first write.
      const again = send(a, new Uint8Array(MiB).fill(9));
      expect(view.take(again, MiB)).toEqual(new Uint8Array(MiB).fill(9));
    } finally {
      a.close(0);
    }
  });

  it("does it by itself once no block has been sent for a while and every block was read", async () => {
    const a = arena(500);
    try {
      const view = ArenaView.map(a.path);
      const burst = Array.from({ length: 8 }, (_, i) => send(a, new Uint8Array(MiB).fill(i)));
      for (const b of burst) view.take(b, MiB);
      expect(held(a.path)).toBeGreaterThan(8 * MiB);
      await waitFor(() => held(a.path) < MiB, "the idle arena to give its pages back", 20_000, 100);
    } finally {
      a.close(0);
    }
  });
});
