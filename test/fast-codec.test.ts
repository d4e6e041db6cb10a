// The wire codec's direct loops for the common case (src/wire/fast-codec.ts) against msgpack's general
// path: the same bytes for every value, the same values from every message, and the general path's own
// errors for what the loops leave to it.
import { describe, expect, it } from "vitest";
import { decode, decodeGeneral, encode, encodeFrame, encodeGeneral, EncodeError, KeptRef, type BinaryWriter } from "../src/wire/codec.ts";
import { fastDecode, fastEncode, GIVE_UP_RESULT } from "../src/wire/fast-codec.ts";

const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");

/** A seeded generator, so a failure names a value that can be made again. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const INTS = [0, 1, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 40 + 3, Number.MAX_SAFE_INTEGER, -1, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1, -(2 ** 40) - 7, Number.MIN_SAFE_INTEGER];
const FLOATS = [0.5, -1.25, 1e300, -1e-300, NaN, Infinity, -Infinity, 2 ** 53, -(2 ** 60), Number.MIN_VALUE];

/** A random value of the kinds the loops take (and, with `other`, some they leave to msgpack's general path). */
function randomValue(next: () => number, depth: number, other: boolean): unknown {
  const pick = Math.floor(next() * (depth > 3 ? 7 : 10));
  const text = (n: number) => Array.from({ length: n }, () => String.fromCharCode(32 + Math.floor(next() * 95))).join("");
  switch (pick) {
    case 0:
      return INTS[Math.floor(next() * INTS.length)];
    case 1:
      return FLOATS[Math.floor(next() * FLOATS.length)];
    case 2:
      return [0, 5, 31, 32, 255, 256, 300][Math.floor(next() * 7)]! <= 40 ? text(Math.floor(next() * 40)) : text(200 + Math.floor(next() * 400));
    case 3:
      return [true, false, null, undefined, -0][Math.floor(next() * 5)];
    case 4: {
      const n = [0, 1, 2, 4, 8, 16, 17, 255, 256, depth === 0 ? 70_000 : 3][Math.floor(next() * 10)]!;
      return Uint8Array.from({ length: n }, () => Math.floor(next() * 256));
    }
    case 5:
      if (!other) return text(3);
      return [new Date(1_700_000_000_000), 10n ** 20n, new Map([["a", 1]]), new Set([1]), new Float32Array([1.5, 2]), "héllo ✓", new Error("boom"), new KeptRef("/s", "t", "D")][Math.floor(next() * 8)];
    case 6:
      return text(Math.floor(next() * 20));
    case 7:
    case 8: {
      const n = depth < 2 ? [0, 1, 3, 15, 16, 20][Math.floor(next() * 6)]! : Math.floor(next() * 3);
      return Array.from({ length: n }, () => randomValue(next, depth + 1, other));
    }
    default: {
      const n = depth < 2 ? [0, 1, 3, 15, 16, 20][Math.floor(next() * 6)]! : Math.floor(next() * 3);
      const o: Record<string, unknown> = {};
      for (let i = 0; i < n; i++) o[text(1 + Math.floor(next() * 24))] = randomValue(next, depth + 1, other);
      return o;
    }
  }
}

describe("fast-codec: the same bytes as msgpack's general path", () => {
  it("for every kind it takes, at every size boundary", () => {
    const values: unknown[] = [
      ...INTS, ...FLOATS, -0, true, false, null, undefined, "", "a", "x".repeat(31), "x".repeat(32), "x".repeat(255), "x".repeat(256), "x".repeat(65_536),
      [], [1, [2, [3]]], Array.from({ length: 15 }, (_, i) => i), Array.from({ length: 16 }, (_, i) => i), Array.from({ length: 70_000 }, (_, i) => i % 3),
      [1, , 3], [undefined, -0], {}, { a: undefined }, Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`, i])),
      Object.fromEntries(Array.from({ length: 70_000 }, (_, i) => [`k${i}`, i])), Object.assign(Object.create(null), { nul: 1 }),
      ...[0, 1, 2, 3, 4, 8, 16, 17, 255, 256, 65_535, 65_536, 100_000].map((n) => new Uint8Array(n).fill(7)),
      { t: "call", id: 12345, m: "__http__", a: [{ method: "POST", url: "http://127.0.0.1:8000/x", head: new Uint8Array([1, 2]), prefix: "/", accept: "*/*", body: null }], r: "abc-1" },
      { t: "ok", id: 1, v: { status: 200, headers: [["content-type", "application/json"]], body: new Uint8Array(56) } },
    ];
    for (const v of values) {
      const fast = fastEncode(v, 0, Infinity, 1 << 20);
      expect(fast, `the loops took ${JSON.stringify(v)?.slice(0, 80)}`).not.toBeNull();
      expect(hex(fast!)).toBe(hex(encodeGeneral(v)));
    }
  });

  it("for 2000 random plain values, and encode() gives those bytes", () => {
    const next = rng(20261130);
    for (let i = 0; i < 2000; i++) {
      const v = randomValue(next, 0, false);
      const general = encodeGeneral(v);
      expect(hex(fastEncode(v, 0, Infinity, 1 << 20)!), `value #${i}`).toBe(hex(general));
      expect(hex(encode(v))).toBe(hex(general));
    }
  });

  it("with a frame's length prefix in front", () => {
    const v = { t: "ok", id: 9, v: [1, "two", { three: 3 }] };
    const framed = encodeFrame(v);
    expect(hex(framed.subarray(4))).toBe(hex(encodeGeneral(v)));
    expect(new DataView(framed.buffer, framed.byteOffset).getUint32(0, true)).toBe(framed.byteLength - 4);
  });
});

describe("fast-codec: leaves to the general path what it does not take, before any side effect", () => {
  it("gives up on other kinds, text that is not ASCII, a __proto__ key and deep nesting; encode() still carries them", () => {
    let deep: unknown = 1;
    for (let i = 0; i < 100; i++) deep = [deep];
    const left = [new Date(0), 10n, new Map([[1, 2]]), new Set(["a"]), new Float32Array(2), new Error("e"), new KeptRef("/s", "t", "D"), "héllo", ["ok", "✓"], { ["é"]: 1 }, JSON.parse('{"__proto__": 1}'), deep, Buffer.from("hi")];
    for (const v of left) {
      expect(fastEncode(v, 0, Infinity, 1 << 20)).toBeNull();
      if (v !== left[10]) expect(hex(encode(v))).toBe(hex(encodeGeneral(v)));
    }
  });

  it("leaves a byte array at the shared-memory threshold to the writer, and takes one below it", () => {
    const puts: number[] = [];
    const writer: BinaryWriter = { thresholdBytes: 1024, put: (b) => (puts.push(b.byteLength), new Uint8Array([9, 9])) };
    expect(fastEncode({ x: new Uint8Array(1023) }, 0, 1024, 1 << 20)).not.toBeNull();
    expect(fastEncode({ x: new Uint8Array(1024) }, 0, 1024, 1 << 20)).toBeNull();
    encode({ x: new Uint8Array(1023) }, { binary: writer });
    expect(puts).toEqual([]);
    encode({ x: new Uint8Array(1024) }, { binary: writer });
    expect(puts).toEqual([1024]);
  });

  it("reports what cannot be sent with the general path's message and path", () => {
    const err = (() => {
      try {
        encode({ ok: [1, { f: () => 0 }] });
      } catch (e) {
        return e;
      }
    })() as EncodeError;
    expect(err).toBeInstanceOf(EncodeError);
    expect(err.message).toContain("$.ok[1].f");
    expect(() => encode(JSON.parse('{"a": {"__proto__": 1}}'))).toThrow(/__proto__/);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => encode(cyclic)).toThrow(/circular/);
  });

  it("encodes a value whose getter encodes again (the general path takes the inner one)", () => {
    const inner = { t: "x" };
    const outer = {
      get nested() {
        return encode(inner).byteLength;
      },
    };
    expect(decode(encode(outer))).toEqual({ nested: encodeGeneral(inner).byteLength });
  });
});

describe("fast-codec: the same values from every message", () => {
  it("for 2000 random values, plain and not, as msgpack's general path reads them", () => {
    const next = rng(7);
    let taken = 0;
    for (let i = 0; i < 2000; i++) {
      const bytes = encodeGeneral(randomValue(next, 0, true));
      const fast = fastDecode(bytes);
      if (fast !== GIVE_UP_RESULT) taken++;
      expect(decode(bytes), `value #${i}`).toEqual(decodeGeneral(bytes));
      if (fast !== GIVE_UP_RESULT) expect(fast).toEqual(decodeGeneral(bytes));
    }
    expect(taken).toBeGreaterThan(700); // most plain messages take the loops
  });

  it("keeps -0, undefined and a fresh copy of each byte array (never a view of the message)", () => {
    const bytes = encodeGeneral({ z: -0, u: undefined, b: new Uint8Array([1, 2, 3]) });
    const v = fastDecode(bytes) as { z: number; u: undefined; b: Uint8Array };
    expect(Object.is(v.z, -0)).toBe(true);
    expect("u" in v && v.u === undefined).toBe(true);
    expect(v.b).toEqual(new Uint8Array([1, 2, 3]));
    bytes.fill(0);
    expect(v.b).toEqual(new Uint8Array([1, 2, 3]));
    expect(Object.getPrototypeOf(v.b)).toBe(Uint8Array.prototype);
  });

  it("reads a message that is a view of a larger Buffer (a socket's frame) as it reads a plain copy, and keeps none of the Buffer", () => {
    const next = rng(11);
    for (let i = 0; i < 500; i++) {
      const plain = encodeGeneral(randomValue(next, 0, true));
      // As a socket hands it over: a Buffer holding other bytes around the frame body.
      const chunk = Buffer.alloc(plain.byteLength + 9, 0xee);
      chunk.set(plain, 5);
      const body = chunk.subarray(5, 5 + plain.byteLength);
      const want = decodeGeneral(plain);
      expect(decode(body), `value #${i}`).toEqual(want);
      const fast = fastDecode(body);
      if (fast === GIVE_UP_RESULT) continue;
      expect(fast).toEqual(want);
      chunk.fill(0);
      expect(fast, `value #${i} after its Buffer was overwritten`).toEqual(want);
    }
    const body = Buffer.from(encodeGeneral({ b: new Uint8Array([7, 8, 9]) }));
    const v = decode(body) as { b: Uint8Array };
    expect(Object.getPrototypeOf(v.b)).toBe(Uint8Array.prototype);
  });

  it("gives up on truncated, trailing and foreign bytes, and decode() throws the general path's errors", () => {
    const good = encodeGeneral({ a: [1, 2, 3], s: "text" });
    const cases = [good.subarray(0, good.byteLength - 2), new Uint8Array([...good, 0xc0]), new Uint8Array([0xc1]), new Uint8Array([0xdd, 0xff, 0xff, 0xff, 0xff]), new Uint8Array([0x81, 0xa9, ...Buffer.from("__proto__"), 1])];
    for (const bytes of cases) {
      expect(fastDecode(bytes)).toBe(GIVE_UP_RESULT);
      const general = (() => {
        try {
          decodeGeneral(bytes);
        } catch (e) {
          return (e as Error).message;
        }
        return "no error";
      })();
      expect(general).not.toBe("no error");
      expect(() => decode(bytes)).toThrow(general);
    }
  });

  it("reads msgpack's bin and non-string keys, which serve-bin never writes, the general way", () => {
    const bin = new Uint8Array([0x81, 0xa1, 0x62, 0xc4, 0x02, 7, 8]); // { b: <bin 2> }
    expect(fastDecode(bin)).toBe(GIVE_UP_RESULT);
    expect(decode(bin)).toEqual(decodeGeneral(bin));
    const numberKey = new Uint8Array([0x81, 0x01, 0xa1, 0x78]); // { 1: "x" }
    expect(fastDecode(numberKey)).toBe(GIVE_UP_RESULT);
    expect(decode(numberKey)).toEqual({ 1: "x" });
  });
});
