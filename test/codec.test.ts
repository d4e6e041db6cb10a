import { describe, it, expect } from "vitest";
import {
  decode,
  encode,
  encodeFrame,
  EncodeError,
  findUnencodable,
  KeptRef,
  roundTrip,
  type BinaryReader,
  type BinaryWriter,
} from "../src/wire/codec.ts";
import { frame, FrameDecoder } from "../src/runtime/channel/frame.ts";

const TYPED = [
  Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array,
  Float32Array, Float64Array, ...(typeof Float16Array === "function" ? [Float16Array] : []),
] as const;

function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error("expected a throw");
}

describe("encode/decode keeps every carried type", () => {
  it("keeps primitives, including NaN, Infinity and -0", () => {
    for (const v of ["", "héllo ✓", 0, 1, -1, 2 ** 40, -(2 ** 53) + 1, 1.5, NaN, Infinity, -Infinity, true, false, null]) {
      expect(roundTrip(v)).toEqual(v);
    }
    expect(Object.is(roundTrip(-0), -0)).toBe(true);
    expect(Object.is(roundTrip([-0])[0], -0)).toBe(true);
  });

  it("keeps undefined at the top, in arrays and as property values", () => {
    expect(roundTrip(undefined)).toBe(undefined);
    const arr = roundTrip([1, undefined, null, undefined]);
    expect(arr).toEqual([1, undefined, null, undefined]);
    expect(arr[1]).toBe(undefined);
    expect(arr[2]).toBe(null);
    const obj = roundTrip({ a: undefined, b: null });
    expect(Object.keys(obj)).toEqual(["a", "b"]);
    expect(obj.a).toBe(undefined);
    expect(obj.b).toBe(null);
  });

  it("keeps strings of every kind and length, as values and as map keys (ASCII ones are read natively)", () => {
    const lone = "a\ud800b"; // a lone surrogate: msgpack's own UTF-8 reader keeps it in short strings
    const strings = ["", "POST", "hello serve-bin", "héllo", "日本語", "emoji 🎉 end", lone, "x".repeat(31), "x".repeat(255), "y".repeat(256), "z".repeat(257), "a".repeat(300) + "é", "é" + "a".repeat(100), "\u007f\u0080"];
    for (const s of strings) {
      expect(decode(encode(s))).toBe(s);
      expect(decode(encode({ [s]: s, list: [s, s] }))).toEqual({ [s]: s, list: [s, s] });
    }
  });

  it("keeps BigInt of any size and sign", () => {
    const values = [0n, 1n, -1n, 2n ** 64n, -(2n ** 64n) - 1n, 123456789012345678901234567890123456789n, -(10n ** 400n) + 7n];
    expect(roundTrip(values)).toEqual(values);
    expect(typeof roundTrip(5n)).toBe("bigint");
  });

  it("keeps Date, including an invalid one", () => {
    const d = roundTrip({ at: new Date(1_700_000_000_123), bad: new Date(NaN) });
    expect(d.at).toBeInstanceOf(Date);
    expect(d.at.getTime()).toBe(1_700_000_000_123);
    expect(Number.isNaN(d.bad.getTime())).toBe(true);
  });

  it("keeps Map with any keys and values, and Set", () => {
    const key = { id: 1 };
    const m = new Map<unknown, unknown>([[key, "obj"], [1, "one"], ["1", "string one"], [2n, new Set([1, "a", undefined])], [null, new Map([[undefined, [new Date(3)]]])]]);
    const back = roundTrip({ m, nested: [m] });
    expect(back.m).toBeInstanceOf(Map);
    expect(back).toEqual({ m, nested: [m] });
    expect([...back.m.keys()]).toEqual([{ id: 1 }, 1, "1", 2n, null]);
    expect(back.m.get(2n)).toBeInstanceOf(Set);
  });

  it("keeps plain objects with a null prototype as plain objects", () => {
    const o = Object.assign(Object.create(null), { a: 1, b: [2] });
    expect(roundTrip(o)).toEqual({ a: 1, b: [2] });
  });

  it("keeps every typed array's class, length and contents", () => {
    for (const C of TYPED) {
      const v = new C([1, 2, 3, 4, 5]);
      const back = roundTrip({ v }).v;
      expect(back.constructor).toBe(C);
      expect(back).toEqual(v);
    }
    for (const C of [BigInt64Array, BigUint64Array]) {
      const v = new C([1n, 2n, 2n ** 63n - 1n]);
      const back = roundTrip([v])[0];
      expect(back.constructor).toBe(C);
      expect(back).toEqual(v);
    }
  });

  it("copies only the view's bytes when a typed array has a byteOffset into a larger buffer", () => {
    const buffer = new ArrayBuffer(1024);
    new Uint8Array(buffer).fill(0xee);
    const f = new Float64Array(buffer, 24, 3);
    f.set([1.5, -2.5, 3.25]);
    const odd = new Uint8Array(buffer, 5, 3);
    const back = roundTrip(new Map<string, ArrayBufferView>([["f", f], ["odd", odd]]));
    const bf = back.get("f") as Float64Array;
    expect(bf.constructor).toBe(Float64Array);
    expect([...bf]).toEqual([1.5, -2.5, 3.25]);
    expect(bf.buffer.byteLength).toBe(24);
    expect(back.get("odd")).toEqual(new Uint8Array([0xee, 0xee, 0xee]));
    expect(encode(f).byteLength).toBeLessThan(40);
  });

  it("keeps ArrayBuffer and DataView", () => {
    const ab = new Uint8Array([1, 2, 3]).buffer;
    const dv = new DataView(new Uint8Array([9, 8, 7, 6]).buffer, 1, 2);
    const back = roundTrip({ ab, dv });
    expect(back.ab).toBeInstanceOf(ArrayBuffer);
    expect(new Uint8Array(back.ab)).toEqual(new Uint8Array([1, 2, 3]));
    expect(back.dv).toBeInstanceOf(DataView);
    expect(back.dv.byteLength).toBe(2);
    expect([back.dv.getUint8(0), back.dv.getUint8(1)]).toEqual([8, 7]);
  });

  it("decodes a Node Buffer as a Uint8Array", () => {
    const back = roundTrip(Buffer.from("abc"));
    expect(back.constructor).toBe(Uint8Array);
    expect(back).toEqual(new Uint8Array([97, 98, 99]));
  });

  it("decoded binary values never alias the encoded bytes", () => {
    const bytes = encode(new Uint8Array([1, 2, 3]));
    const back = decode(bytes) as Uint8Array;
    bytes.fill(0);
    expect(back).toEqual(new Uint8Array([1, 2, 3]));
  });

  it("keeps an Error's name, message and stack; subclasses come back as Error", () => {
    class QuotaError extends Error {
      override name = "QuotaError";
    }
    const e = new QuotaError("over quota");
    const t = new TypeError("bad type");
    const back = roundTrip({ errors: [e, t, new Error("plain")] }).errors;
    for (const [got, sent] of [[back[0], e], [back[1], t]] as const) {
      expect(got.constructor).toBe(Error);
      expect(got.name).toBe(sent.name);
      expect(got.message).toBe(sent.message);
      expect(got.stack).toBe(sent.stack);
    }
    expect(back[2].name).toBe("Error");
    expect(Object.keys(back[1])).toEqual([]);
  });

  it("keeps a string or number `code` on an Error", () => {
    const e = Object.assign(new Error("missing"), { code: "ENOENT" });
    expect((roundTrip(e) as { code?: string }).code).toBe("ENOENT");
  });

  it("keeps a realistic call message whole", () => {
    const msg = { t: "call", id: 1, d: "Model", m: "forward", a: ["(5 + 1.5)", { x: new Float32Array([1, 2]), when: new Date(0), n: 1n }] };
    expect(roundTrip(msg)).toEqual(msg);
  });

  it("keeps a traced call message whole: the caller's traceparent and its queue wait", () => {
    const msg = { t: "call", id: 2, m: "forward", a: [1], r: "req-1", tp: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", q: 0.125 };
    expect(roundTrip(msg)).toEqual(msg);
  });

  it("accepts values nested far, but not past the limit", () => {
    let deep: unknown = 1;
    for (let i = 0; i < 400; i++) deep = [deep];
    expect(roundTrip(deep)).toEqual(deep);
    let tooDeep: unknown = 1;
    for (let i = 0; i < 600; i++) tooDeep = { a: tooDeep };
    const err = thrown(() => encode(tooDeep)) as EncodeError;
    expect(err).toBeInstanceOf(EncodeError);
    expect(err.reason).toBe("a value nested deeper than 500 levels");
  });
});

describe("a KeptRef (ext type 8)", () => {
  it("round-trips as a KeptRef, alone, nested and as a call's argument", () => {
    const ref = new KeptRef("/tmp/run/r-1.sock", "a1b2c3", "Stage");
    const back = roundTrip(ref);
    expect(back).toBeInstanceOf(KeptRef);
    expect(back).toEqual(ref);
    const msg = roundTrip({ t: "call", id: 3, m: null, a: [ref, 1, new Map([["r", ref]])], r: "x", k: true });
    expect(msg.a[0]).toBeInstanceOf(KeptRef);
    expect(msg.a[0]).toEqual(ref);
    expect((msg.a[2] as Map<string, KeptRef>).get("r")).toBeInstanceOf(KeptRef);
    expect(findUnencodable([ref])).toBeNull();
  });

  it("is ext type 8 on the wire", () => {
    const bytes = encode(new KeptRef("s", "t", "d"));
    // ext 8 format: 0xc7, body length (7: a 3-array of 1-char strings), type
    expect([...bytes.subarray(0, 3)]).toEqual([0xc7, 7, 8]);
    expect(decode(bytes)).toEqual(new KeptRef("s", "t", "d"));
  });
});

describe("encode refuses what it cannot carry, naming the path", () => {
  const cases: Array<[string, () => unknown, string, string]> = [
    ["a function in an array", () => ({ a: [1, 2, () => 0] }), "$.a[2]", "a function"],
    ["a class instance", () => { class Foo {} return [0, { weights: new Foo() }]; }, "$[1].weights", "an instance of class Foo"],
    ["a symbol", () => ({ s: Symbol("x") }), "$.s", "a symbol"],
    ["a Promise", () => ({ p: Promise.resolve(1) }), "$.p", "a Promise"],
    ["a WeakMap", () => new Map([["k", new WeakMap()]]), '$<"k">', "an instance of class WeakMap"],
    ["a Map key", () => ({ m: new Map([[() => 1, 1]]) }), "$.m<key #0>", "a function"],
    ["a Set item", () => [new Set([1, Symbol()])], "$[0]<item #1>", "a symbol"],
    ["an odd property name", () => ({ "my key": Math.max }), '$["my key"]', "a function"],
    ["an own __proto__ key", () => ({ body: JSON.parse('{"__proto__": {"admin": true}}') }), '$.body["__proto__"]', "a property named __proto__"],
    ["a subclass of Map", () => ({ m: new (class Registry extends Map {})() }), "$.m", "an instance of class Registry"],
  ];
  for (const [what, make, path, reason] of cases) {
    it(`names the path of ${what}`, () => {
      const value = make();
      const err = thrown(() => encode(value)) as EncodeError;
      expect(err).toBeInstanceOf(EncodeError);
      expect({ path: err.path, reason: err.reason }).toEqual({ path, reason });
      expect(err.message.startsWith(`Cannot send ${reason} at ${path}: `)).toBe(true);
      expect(findUnencodable(value)).toEqual({ path, reason });
    });
  }

  it("says what to do in the message", () => {
    expect((thrown(() => encode({ f: () => 0 })) as Error).message).toBe(
      "Cannot send a function at $.f: functions cannot cross processes; pass the data it works on instead (the wire codec carries primitives, undefined, BigInt, plain objects, arrays, Date, Map, Set, ArrayBuffer, typed arrays, DataView and Error).",
    );
    expect((thrown(() => encode(Promise.resolve())) as Error).message).toBe("Cannot send a Promise at $: await it before passing or returning it.");
  });

  it("fails on a cycle with the path, without overflowing the stack", () => {
    const a: Record<string, unknown> = { list: [] };
    (a.list as unknown[]).push({ back: a });
    const err = thrown(() => encode(a)) as EncodeError;
    expect(err).toBeInstanceOf(EncodeError);
    expect({ path: err.path, reason: err.reason }).toEqual({ path: "$.list[0].back", reason: "a circular reference (back to $)" });
  });

  it("fails on a cycle through a Map", () => {
    const m = new Map<string, unknown>();
    m.set("self", { m });
    const err = thrown(() => encode({ root: m })) as EncodeError;
    expect({ path: err.path, reason: err.reason }).toEqual({ path: '$.root<"self">.m', reason: "a circular reference (back to $.root)" });
  });

  it("accepts a shared, non-cyclic object twice", () => {
    const shared = { x: 1 };
    expect(roundTrip([shared, shared])).toEqual([{ x: 1 }, { x: 1 }]);
    expect(findUnencodable([shared, { shared }])).toBe(null);
  });

  it("prefixes the path it is given", () => {
    expect(findUnencodable({ f: () => 0 }, "args[1]")).toEqual({ path: "args[1].f", reason: "a function" });
  });

  it("stays usable after a failure", () => {
    thrown(() => encode(new Map([["x", { f: () => 0 }]])));
    expect(roundTrip(new Map([["x", 1]]))).toEqual(new Map([["x", 1]]));
  });
});

/** An in-memory store with the real BinaryWriter/BinaryReader interface. */
function memoryStore(thresholdBytes: number) {
  const blobs = new Map<number, Uint8Array>();
  let next = 0;
  const writer: BinaryWriter = {
    thresholdBytes,
    put(bytes) {
      const id = next++;
      blobs.set(id, bytes.slice());
      return new Uint8Array(new Uint32Array([id]).buffer);
    },
  };
  const reader: BinaryReader = {
    get(descriptor) {
      const id = new Uint32Array(descriptor.slice().buffer)[0]!;
      return blobs.get(id)!.slice();
    },
  };
  return { blobs, writer, reader };
}

describe("binary values above the threshold go through a BinaryWriter", () => {
  it("puts large values in the store, inlines small ones, and rebuilds the same classes", () => {
    const { blobs, writer, reader } = memoryStore(1024);
    const backing = new ArrayBuffer(8192);
    const big = new Float32Array(backing, 16, 1000).map((_, i) => i / 2);
    const value = {
      big,
      small: new Int16Array([1, -2]),
      ab: new ArrayBuffer(4096),
      dv: new DataView(new ArrayBuffer(2048)),
      nested: new Map([["w", new BigInt64Array(200).fill(-3n)]]),
    };
    const bytes = encode(value, { binary: writer });
    expect(blobs.size).toBe(4);
    expect(bytes.byteLength).toBeLessThan(200);
    expect(blobs.get(0)!.byteLength).toBe(4000); // only the view's bytes
    const back = decode(bytes, { binary: reader }) as typeof value;
    expect(back).toEqual(value);
    expect(back.big.constructor).toBe(Float32Array);
    expect(back.ab).toBeInstanceOf(ArrayBuffer);
    expect(back.dv).toBeInstanceOf(DataView);
    expect(back.nested.get("w")!.constructor).toBe(BigInt64Array);
  });

  it("inlines the bytes when the writer declines them", () => {
    const writer: BinaryWriter = { thresholdBytes: 1, put: () => null };
    const v = new Uint16Array([1, 2, 3]);
    expect(decode(encode(v, { binary: writer }))).toEqual(v);
  });

  it("rebuilds an aligned typed array from a reader whose copy sits at an odd offset", () => {
    const { writer } = memoryStore(8);
    const reader: BinaryReader = { get: () => { const b = new Uint8Array(33); b.set(new Uint8Array(new Float64Array([7, 8, 9, 10]).buffer), 1); return b.subarray(1); } };
    expect(decode(encode(new Float64Array([7, 8, 9, 10]), { binary: writer }), { binary: reader })).toEqual(new Float64Array([7, 8, 9, 10]));
  });

  it("refuses a shared-memory reference when no reader is given", () => {
    const { writer } = memoryStore(4);
    const bytes = encode(new Uint8Array(16), { binary: writer });
    expect(() => decode(bytes)).toThrow("decode() was called without a BinaryReader");
  });
});

describe("encodeFrame", () => {
  it("makes exactly frame(encode(value)), for small, nested and 16 MiB values, one after another", () => {
    const big = new Float32Array(4 << 20).map((_, i) => i);
    const values = [{ t: "call", id: 1, a: [1, "x", undefined, -0, 5n] }, new Map([[1, new Set([new Date(0)])]]), { v: big }, "after the big one", []];
    for (const v of values) expect(Buffer.from(encodeFrame(v)).equals(Buffer.from(frame(encode(v))))).toBe(true);
    const frames = new FrameDecoder();
    const bodies = frames.push(Buffer.concat(values.map((v) => encodeFrame(v))));
    expect(bodies.map((b) => decode(b))).toEqual(values);
  });

  it("refuses what encode refuses, naming the path", () => {
    expect(() => encodeFrame({ a: [() => 0] })).toThrow(/Cannot send a function at \$\.a\[0\]/);
  });
});
