import { describe, it, expect } from "vitest";
import { frame, FrameDecoder } from "../src/runtime/channel/frame.ts";

const bodies = [new Uint8Array([1, 2, 3]), new Uint8Array(0), new Uint8Array(300).map((_, i) => i & 0xff)];
const stream = concat(bodies.map(frame));

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

describe("frame", () => {
  it("prefixes the body with its length, little-endian", () => {
    expect(frame(new Uint8Array([9, 9]))).toEqual(new Uint8Array([2, 0, 0, 0, 9, 9]));
    expect([...frame(new Uint8Array(0x1_02_03)).subarray(0, 4)]).toEqual([3, 2, 1, 0]);
  });
});

describe("FrameDecoder", () => {
  it("returns every frame of one chunk in order", () => {
    const d = new FrameDecoder();
    expect(d.push(stream)).toEqual(bodies);
    expect(d.buffered).toBe(0);
  });

  it("returns the same frames when the stream is split at any one byte boundary", () => {
    for (let cut = 0; cut <= stream.byteLength; cut++) {
      const d = new FrameDecoder();
      const got = [...d.push(stream.subarray(0, cut)), ...d.push(stream.subarray(cut))];
      expect(got).toEqual(bodies);
      expect(d.buffered).toBe(0);
    }
  });

  it("returns the same frames when the stream arrives one byte at a time", () => {
    const d = new FrameDecoder();
    const got: Uint8Array[] = [];
    for (let i = 0; i < stream.byteLength; i++) got.push(...d.push(stream.subarray(i, i + 1)));
    expect(got).toEqual(bodies);
  });

  it("returns bodies that stay valid when the caller reuses its chunk buffer", () => {
    const d = new FrameDecoder();
    const chunk = stream.slice();
    const got = [...d.push(chunk.subarray(0, 5)), ...d.push(chunk.subarray(5))];
    chunk.fill(0);
    expect(got).toEqual(bodies);
  });

  it("counts buffered bytes of a partial frame", () => {
    const d = new FrameDecoder();
    expect(d.push(stream.subarray(0, 2))).toEqual([]);
    expect(d.buffered).toBe(2);
    expect(d.push(stream.subarray(2, 6))).toEqual([]);
    expect(d.buffered).toBe(6);
  });

  it("reassembles a 32 MiB frame pushed in 64 KiB chunks", () => {
    const size = 32 * 1024 * 1024;
    const body = new Uint8Array(size);
    for (let i = 0; i < size; i += 4096) body[i] = (i >>> 12) & 0xff;
    body[size - 1] = 0x7f;
    const wire = concat([frame(body), frame(new Uint8Array([42]))]);
    const d = new FrameDecoder();
    const got: Uint8Array[] = [];
    for (let at = 0; at < wire.byteLength; at += 65536) got.push(...d.push(wire.subarray(at, at + 65536)));
    expect(got.length).toBe(2);
    expect(got[0]!.byteLength).toBe(size);
    expect(Buffer.compare(got[0]!, body)).toBe(0);
    expect(got[1]).toEqual(new Uint8Array([42]));
  });

  it("refuses a length prefix over its limit instead of allocating it", () => {
    const d = new FrameDecoder(1024);
    expect(() => d.push(new Uint8Array([0xff, 0xff, 0xff, 0x7f]))).toThrow("over the limit of 1024");
  });

  it("each: hands bodies whole in the chunk as views of it, split ones as their own buffers, in order", () => {
    const d = new FrameDecoder();
    const seen: { body: number[]; view: boolean; ofChunk: boolean }[] = [];
    const first = stream.subarray(0, 12); // frames 1 and 2 whole, frame 3 begun
    const record = (chunk: Uint8Array) => (b: Uint8Array, view: boolean) => seen.push({ body: [...b], view, ofChunk: b.buffer === chunk.buffer });
    d.each(first, record(first));
    const rest = new Uint8Array(stream.subarray(12));
    d.each(rest, record(rest));
    expect(seen.map((s) => s.body)).toEqual(bodies.map((b) => [...b]));
    expect(seen.map((s) => [s.view, s.ofChunk])).toEqual([[true, true], [true, true], [false, false]]);
  });

  it("each: a callback that throws does not lose the framing; the first error comes after the chunk is read", () => {
    const d = new FrameDecoder();
    const got: number[][] = [];
    expect(() =>
      d.each(stream, (b) => {
        got.push([...b]);
        if (got.length < 3) throw new Error(`handler failed on frame ${got.length}`);
      }),
    ).toThrow("handler failed on frame 1");
    expect(got).toEqual(bodies.map((b) => [...b]));
    expect(d.push(frame(new Uint8Array([5])))).toEqual([new Uint8Array([5])]);
  });
});
