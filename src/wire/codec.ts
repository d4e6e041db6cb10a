/**
 * The wire codec: msgpack plus one extension type per JavaScript kind that
 * msgpack would otherwise lose (SPEC §1). Every call between processes goes
 * through it, and local `execute` uses `roundTrip`, so a graph answers the
 * same locally and served.
 *
 * @example
 *   const bytes = encode({ x: new Float32Array([1, 2]), n: 10n });
 *   decode(bytes); // { x: Float32Array [1, 2], n: 10n }
 */
import { Decoder, Encoder, ExtData, type ExtensionCodecType } from "@msgpack/msgpack";
import { fastDecode, fastEncode, FAST_EXT, GIVE_UP_RESULT, setBinaryKinds } from "./fast-codec.ts";

/** A place to put large binary values outside the message (shared memory); optional. */
export interface BinaryWriter {
  /** returns descriptor bytes to embed instead of the bytes, or null to inline them */
  put(bytes: Uint8Array): Uint8Array | null;
  thresholdBytes: number;
}
export interface BinaryReader {
  /**
   * returns bytes the decoded value may keep for as long as it lives: a fresh copy, or a view of
   * shared memory whose buffer spans exactly these bytes and stays valid while referenced (the
   * descriptor itself is a view valid only during the call)
   */
  get(descriptor: Uint8Array): Uint8Array;
}
export interface CodecOptions {
  binary?: BinaryWriter | BinaryReader;
}

/**
 * A call's result that its replica kept instead of sending back (a forwarded
 * `DeploymentResponse`): whoever holds the reference fetches the value from
 * `socket`. Only the runtime makes them; user code never sees one.
 */
export class KeptRef {
  constructor(
    /** The producing replica's data socket. */
    readonly socket: string,
    readonly token: string,
    /** The deployment that produced the value, for messages. */
    readonly deployment: string,
  ) {}
}

/** Thrown by encode; message names the path and says what to do. */
export class EncodeError extends Error {
  override readonly name = "EncodeError";
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super(`Cannot send ${reason} at ${path}: ${hintFor(reason)}`);
  }
}

const CARRIED =
  "the wire codec carries primitives, undefined, BigInt, plain objects, arrays, Date, Map, Set, " +
  "ArrayBuffer, typed arrays, DataView and Error";

function hintFor(reason: string): string {
  if (reason === "a function") return `functions cannot cross processes; pass the data it works on instead (${CARRIED}).`;
  if (reason === "a symbol") return "use a string instead.";
  if (reason.startsWith("a Promise")) return "await it before passing or returning it.";
  if (reason.startsWith("a circular")) return "remove the cycle; the codec sends trees, not graphs.";
  if (reason.startsWith("a value nested")) return "flatten the value.";
  if (reason.startsWith("a property named")) return "rename the key; receivers refuse it because it would set the object's prototype.";
  return `convert it first, e.g. to a plain object with { ...value } (${CARRIED}).`;
}

// Extension type numbers are the wire format: never renumber, only add.
const T_UNDEFINED = 0;
const T_NEG_ZERO = 1;
const T_BIGINT = 2;
const T_DATE = 3;
const T_MAP = 4;
const T_SET = 5;
const T_ERROR = 6;
const T_BINREF = 7; // [binary kind][descriptor]: the bytes live in shared memory
const T_KEPT_REF = 8; // [socket, token, deployment]: a call's result kept by the replica that made it
const T_BINARY = 16; // T_BINARY + index in BINARY_KINDS: the bytes follow inline

/** Deeper than this is refused; msgpack's recursion (and a cycle) must stop well before the stack does. */
const MAX_DEPTH = 500;
/** Pooled encoders whose buffer grew past this are dropped, so one big message does not pin memory in an idle replica. */
const SHRINK_BYTES = 1 << 20;

type TypedCtor = { readonly prototype: object; readonly BYTES_PER_ELEMENT: number; new (b: ArrayBuffer, off: number, len: number): ArrayBufferView };
interface BinaryKind {
  proto: object;
  /** Builds the value from bytes the decoder owns (fresh, not shared with the input). */
  make(b: Uint8Array): unknown;
}

const exactBuffer = (b: Uint8Array): ArrayBuffer =>
  (b.byteOffset === 0 && b.byteLength === b.buffer.byteLength ? b.buffer : b.slice().buffer) as ArrayBuffer;

function typed(C: TypedCtor): BinaryKind {
  const size = C.BYTES_PER_ELEMENT;
  // Bytes arrive as a Uint8Array already: returned as they are. Reading `.buffer` of a small fresh
  // typed array makes the engine move its bytes to a new ArrayBuffer (~0.3 µs a value on every hop).
  if ((C as unknown) === Uint8Array) return { proto: C.prototype, make: (b) => (Object.getPrototypeOf(b) === Uint8Array.prototype ? b : new Uint8Array(b.buffer, b.byteOffset, b.byteLength)) };
  return {
    proto: C.prototype,
    // An element view must be aligned to its element size; copy only when it is not.
    make: (b) => (b.byteOffset % size === 0 ? new C(b.buffer as ArrayBuffer, b.byteOffset, b.byteLength / size) : new C(b.slice().buffer, 0, b.byteLength / size)),
  };
}

const F16 = (globalThis as { Float16Array?: TypedCtor }).Float16Array;
// Order is wire format (index = ext type - T_BINARY): append only.
const BINARY_KINDS: BinaryKind[] = [
  { proto: ArrayBuffer.prototype, make: exactBuffer },
  { proto: DataView.prototype, make: (b) => new DataView(b.buffer, b.byteOffset, b.byteLength) },
  ...[Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array].map((C) => typed(C as unknown as TypedCtor)),
  F16 ? typed(F16) : { proto: {}, make: () => { throw new Error("a Float16Array arrived but this runtime has no Float16Array"); } },
];

// The common case's direct loops (fast-codec.ts) write and read the same extension numbers and binary kinds.
if (FAST_EXT.undefined !== T_UNDEFINED || FAST_EXT.negZero !== T_NEG_ZERO || FAST_EXT.date !== T_DATE || FAST_EXT.binary !== T_BINARY) throw new Error("fast-codec.ts and codec.ts disagree on extension numbers");
setBinaryKinds(
  BINARY_KINDS.map((k) => k.make),
  BINARY_KINDS.findIndex((k) => k.proto === Uint8Array.prototype),
);

let writer: BinaryWriter | undefined;
let reader: BinaryReader | undefined;
/** Depth of the value being encoded: the Map/Set handlers start their nested encoder from it, so MAX_DEPTH counts across nesting. */
let curDepth = 1;
let nestBase = 0;

const ascii = new TextDecoder();
const UNENCODABLE = new Error("unencodable"); // thrown on the hot path; findUnencodable then finds the path
const UNDEFINED_EXT = new ExtData(T_UNDEFINED, new Uint8Array(0));
const NEG_ZERO_EXT = new ExtData(T_NEG_ZERO, new Uint8Array(0));

function binaryExt(kind: number, v: ArrayBuffer | ArrayBufferView): ExtData {
  // A plain Uint8Array is its own bytes: no view over its `.buffer` (which a small one has to be moved to first).
  const bytes = v instanceof ArrayBuffer ? new Uint8Array(v) : Object.getPrototypeOf(v) === Uint8Array.prototype ? (v as Uint8Array) : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  if (writer !== undefined && bytes.byteLength >= writer.thresholdBytes) {
    const descriptor = writer.put(bytes);
    if (descriptor !== null) {
      const data = new Uint8Array(1 + descriptor.byteLength);
      data[0] = kind;
      data.set(descriptor, 1);
      return new ExtData(T_BINREF, data);
    }
  }
  return new ExtData(T_BINARY + kind, bytes); // only this view's bytes, not its whole buffer
}

function bigintBytes(v: bigint): Uint8Array {
  const s = v.toString(16); // linear in size, unlike decimal; "-" for negatives
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function errorFields(e: Error): unknown[] {
  const code = (e as { code?: unknown }).code;
  return [String(e.name), String(e.message), typeof e.stack === "string" ? e.stack : undefined, typeof code === "string" || typeof code === "number" ? code : undefined];
}

const encoders: (WireEncoder | undefined)[] = [];
let encLevel = 0;

/** Encodes a child value with a pooled encoder; msgpack's ext hook wants bytes, not a callback into the outer encoder. */
function nested(value: unknown[]): Uint8Array {
  const i = encLevel++;
  const savedBase = nestBase;
  nestBase = curDepth;
  const enc = (encoders[i] ??= newEncoder());
  try {
    const out = enc.encodeSharedRef(value); // the outer encoder copies it before this slot is used again
    if (out.byteLength > SHRINK_BYTES) encoders[i] = undefined;
    return out;
  } finally {
    encLevel = i;
    nestBase = savedBase;
  }
}

const handlers = new Map<object, (v: never) => ExtData>([
  [Map.prototype, (m: Map<unknown, unknown>) => {
    const flat: unknown[] = [];
    for (const [k, v] of m) flat.push(k, v);
    return new ExtData(T_MAP, nested(flat));
  }],
  [Set.prototype, (s: Set<unknown>) => new ExtData(T_SET, nested([...s]))],
  [Date.prototype, (d: Date) => {
    const data = new Uint8Array(8);
    new DataView(data.buffer).setFloat64(0, d.getTime()); // NaN for an invalid Date survives
    return new ExtData(T_DATE, data);
  }],
  [BigInt.prototype, (b: bigint) => new ExtData(T_BIGINT, bigintBytes(b))],
  [KeptRef.prototype, (r: KeptRef) => new ExtData(T_KEPT_REF, nested([r.socket, r.token, r.deployment]))],
]);
BINARY_KINDS.forEach(({ proto }, kind) => handlers.set(proto, (v: ArrayBufferView) => binaryExt(kind, v)));
// A Node Buffer is sent as its bytes and decodes as a plain Uint8Array.
if (typeof Buffer === "function") handlers.set(Buffer.prototype, (v: Uint8Array) => binaryExt(BINARY_KINDS.findIndex((k) => k.proto === Uint8Array.prototype), v));

const extensionCodec: ExtensionCodecType<undefined> = {
  tryToEncode(o: unknown): ExtData | null {
    if (o === UNDEFINED_EXT || o === NEG_ZERO_EXT) return o as ExtData;
    const proto = Object.getPrototypeOf(o);
    // Plain objects and arrays are msgpack's own: the common case returns first.
    if (proto === Array.prototype) return null;
    if (proto === Object.prototype || proto === null) {
      // msgpack's decoder refuses this key (prototype pollution); fail here, where the path is known.
      if (Object.hasOwn(o as object, "__proto__")) throw UNENCODABLE;
      return null;
    }
    const handle = handlers.get(proto);
    if (handle !== undefined) return handle(o as never);
    if (o instanceof Error) return new ExtData(T_ERROR, nested(errorFields(o)));
    throw UNENCODABLE;
  },
  decode(data: Uint8Array, type: number): unknown {
    switch (type) {
      case T_UNDEFINED: return undefined;
      case T_NEG_ZERO: return -0;
      case T_BIGINT: {
        const negative = data[0] === 45; // "-"
        const magnitude = BigInt("0x" + ascii.decode(negative ? data.subarray(1) : data));
        return negative ? -magnitude : magnitude;
      }
      case T_DATE: return new Date(new DataView(data.buffer, data.byteOffset, 8).getFloat64(0));
      case T_MAP: {
        const flat = nestedDecode(data) as unknown[];
        const m = new Map<unknown, unknown>();
        for (let i = 0; i < flat.length; i += 2) m.set(flat[i], flat[i + 1]);
        return m;
      }
      case T_SET: return new Set(nestedDecode(data) as unknown[]);
      case T_KEPT_REF: {
        const [socket, token, deployment] = nestedDecode(data) as [string, string, string];
        return new KeptRef(socket, token, deployment);
      }
      case T_ERROR: return makeError(nestedDecode(data) as [string, string, string | undefined, string | number | undefined]);
      case T_BINREF: {
        if (reader === undefined) throw new Error("a message refers to shared memory, but decode() was called without a BinaryReader: pass { binary: reader }");
        return binaryKind(data[0]).make(reader.get(data.subarray(1)));
      }
      default:
        // The input buffer may be reused by its owner (socket chunks), so values never alias it.
        return binaryKind(type - T_BINARY).make(data.slice());
    }
  },
};

function binaryKind(kind: number | undefined): BinaryKind {
  const k = BINARY_KINDS[kind ?? -1];
  if (k === undefined) throw new Error(`unknown wire extension (${kind}): both processes must run the same serve-bin version`);
  return k;
}

function makeError([name, message, stack, code]: [string, string, string | undefined, string | number | undefined]): Error {
  const e = new Error(message);
  // Same shape as a native error: name non-enumerable, so it prints and compares as one.
  if (name !== "Error") Object.defineProperty(e, "name", { value: name, writable: true, configurable: true, enumerable: false });
  e.stack = stack; // the sender's stack, never the decoder's
  if (code !== undefined) (e as { code?: unknown }).code = code;
  return e;
}

// msgpack writes `undefined` as nil before any extension hook runs, and -0 as 0. Its
// only per-value entry point is the private doEncode; wrapping it in a subclass keeps
// the library untouched for anyone else and costs two comparisons per value.
type Internals = { doEncode(this: Encoder, o: unknown, depth: number): void; reinitializeState(): void; pos: number; bytes: Uint8Array };
const baseDoEncode = (Encoder.prototype as unknown as Partial<Internals>).doEncode;
if (typeof baseDoEncode !== "function") throw new Error("@msgpack/msgpack no longer has Encoder#doEncode: src/wire/codec.ts must be updated for this version");
class WireEncoder extends Encoder {
  /**
   * Like encodeSharedRef, with 4 bytes left in front for a length prefix: a framed message is
   * then one buffer, not a second copy of the encoded one (msgpack's own state, as doEncode).
   */
  encodeAfterPrefix(value: unknown): Uint8Array {
    const self = this as unknown as Internals;
    self.reinitializeState();
    self.pos = 4;
    self.doEncode.call(this, value, 1);
    return self.bytes.subarray(0, self.pos);
  }
}
(WireEncoder.prototype as unknown as Internals).doEncode = function (o, depth) {
  if (depth === 1) depth += nestBase;
  curDepth = depth;
  if (o === undefined) o = UNDEFINED_EXT;
  else if (o === 0 && Object.is(o, -0)) o = NEG_ZERO_EXT;
  baseDoEncode.call(this, o, depth);
};
const newEncoder = () => new WireEncoder({ extensionCodec, maxDepth: MAX_DEPTH });

/**
 * String values every message carries (its type, the default method names), by byte length:
 * msgpack caches map keys but decodes every string value anew, byte by byte.
 */
const COMMON_VALUES: string[][] = [];
for (const v of ["call", "fetch", "release", "cancel", "credit", "ok", "err", "busy", "chunk", "end", "__call__", "__http__"]) (COMMON_VALUES[v.length] ??= []).push(v);

type DecoderInternals = { bytes: Uint8Array; pos: number; stateIsMapKey(): boolean; decodeUtf8String(byteLength: number, headerOffset: number): string };
const baseDecodeUtf8 = (Decoder.prototype as unknown as Partial<DecoderInternals>).decodeUtf8String;
if (typeof baseDecodeUtf8 !== "function") throw new Error("@msgpack/msgpack no longer has Decoder#decodeUtf8String: src/wire/codec.ts must be updated for this version");
/**
 * Reads bytes as a string natively, one byte a character (Bun's Buffer#latin1Slice works on any
 * Uint8Array): for ASCII, the same string msgpack's JavaScript UTF-8 loop makes, 3 to 20 times faster.
 */
const latin1Slice = typeof Buffer === "function" ? (Buffer.prototype as unknown as { latin1Slice?: (this: Uint8Array, start: number, end: number) => string }).latin1Slice : undefined;
/** Longer values are left to msgpack (a TextDecoder), which beats a scan for non-ASCII bytes at that size. */
const ASCII_SCAN_MAX = 256;

class WireDecoder extends Decoder {}
(WireDecoder.prototype as unknown as DecoderInternals).decodeUtf8String = function (this: DecoderInternals, byteLength, headerOffset) {
  const bytes = this.bytes;
  const at = this.pos + headerOffset;
  if (byteLength <= ASCII_SCAN_MAX && bytes.byteLength >= at + byteLength && !this.stateIsMapKey()) {
    const candidates = COMMON_VALUES[byteLength];
    if (candidates !== undefined) {
      for (const c of candidates) {
        let i = 0;
        while (i < byteLength && bytes[at + i] === c.charCodeAt(i)) i++;
        if (i === byteLength) {
          this.pos = at + byteLength;
          return c;
        }
      }
    }
    if (latin1Slice !== undefined) {
      const end = at + byteLength;
      let i = at;
      while (i < end && bytes[i]! < 0x80) i++;
      if (i === end) {
        this.pos = end;
        return latin1Slice.call(bytes, at, end);
      }
    }
  }
  return baseDecodeUtf8.call(this, byteLength, headerOffset);
};

const decoders: Decoder[] = [];
let decLevel = 0;
const NIL = new Uint8Array([0xc0]);

function runDecoder(bytes: Uint8Array): unknown {
  const i = decLevel++;
  const dec = (decoders[i] ??= new WireDecoder({ extensionCodec }));
  try {
    return dec.decode(bytes);
  } finally {
    decLevel = i;
    if (bytes.byteLength > SHRINK_BYTES) dec.decode(NIL); // the decoder keeps a reference to its last input
  }
}
const nestedDecode = runDecoder;

/**
 * Encodes a value for the wire. Binary values of at least `binary.thresholdBytes`
 * go to `binary.put` when it takes them. The result is the caller's own; when large
 * it may sit at the start of a larger ArrayBuffer, so use its byteOffset/byteLength.
 * @throws EncodeError naming the path of the first value it cannot carry.
 */
export function encode(value: unknown, opts?: { binary?: BinaryWriter }): Uint8Array {
  return encodeWith(value, opts?.binary, false);
}

/** `encode` by msgpack's general path alone, never the direct loops of fast-codec.ts: for tests that hold the two to the same bytes. */
export function encodeGeneral(value: unknown, opts?: { binary?: BinaryWriter }): Uint8Array {
  return encodeWith(value, opts?.binary, false, false);
}

/** Largest body a 4-byte length prefix can announce. */
const MAX_FRAME = 0xffff_ffff;

/**
 * Encodes a value as one frame of channel/frame.ts: a 4-byte little-endian body length, then
 * what `encode` makes, in one buffer (framing `encode`'s result would copy the whole message again).
 * @throws EncodeError as `encode`; RangeError past the 4 GiB a length prefix can say.
 */
export function encodeFrame(value: unknown, opts?: { binary?: BinaryWriter }): Uint8Array {
  const out = encodeWith(value, opts?.binary, true);
  const n = out.byteLength - 4;
  if (n > MAX_FRAME) throw new RangeError(`a frame body of ${n} bytes is over the 4 GiB limit of the length prefix; send large binary values through shared memory`);
  out[0] = n & 0xff;
  out[1] = (n >>> 8) & 0xff;
  out[2] = (n >>> 16) & 0xff;
  out[3] = n >>> 24;
  return out;
}

function encodeWith(value: unknown, binary: BinaryWriter | undefined, prefixed: boolean, fast = true): Uint8Array {
  const savedWriter = writer;
  const savedBase = nestBase;
  writer = binary;
  nestBase = 0;
  const i = encLevel++;
  const enc = (encoders[i] ??= newEncoder());
  try {
    // The common case (plain data, ASCII text, small byte arrays) by direct loops: the same bytes, in less code
    // than msgpack's general path (which matters most in a process that just woke up). Anything else, the general way.
    if (fast) {
      const out = fastEncode(value, prefixed ? 4 : 0, binary?.thresholdBytes ?? Infinity, SHRINK_BYTES);
      if (out !== null) return out;
    }
    const out = prefixed ? enc.encodeAfterPrefix(value) : enc.encodeSharedRef(value);
    if (out.byteLength <= SHRINK_BYTES) return out.slice();
    encoders[i] = undefined; // the big buffer leaves with the result: no pinned memory, one copy saved
    return out;
  } catch (err) {
    // The hot path never walks the value twice: only a failure pays for finding where.
    if (err instanceof EncodeError) throw err;
    const found = findUnencodable(value);
    if (found !== null) throw new EncodeError(found.path, found.reason);
    throw err;
  } finally {
    encLevel = i;
    writer = savedWriter;
    nestBase = savedBase;
  }
}

/**
 * Decodes what `encode` made. Binary values never alias `bytes`: inline ones are fresh
 * copies, shared-memory ones what the `binary` reader gives (see BinaryReader).
 */
export function decode(bytes: Uint8Array, opts?: { binary?: BinaryReader }): unknown {
  return decodeWith(bytes, opts?.binary, true);
}

/** `decode` by msgpack's general path alone: for tests that hold fast-codec.ts's reading to the same values. */
export function decodeGeneral(bytes: Uint8Array, opts?: { binary?: BinaryReader }): unknown {
  return decodeWith(bytes, opts?.binary, false);
}

function decodeWith(bytes: Uint8Array, binary: BinaryReader | undefined, fast: boolean): unknown {
  const saved = reader;
  reader = binary;
  try {
    // The fast path reads a Buffer (a socket's frame) as it is, and copies what it keeps.
    if (fast) {
      const v = fastDecode(bytes);
      if (v !== GIVE_UP_RESULT) return v;
    }
    // A Node Buffer's slice() is a view, not a copy; on a plain Uint8Array view every slice() in msgpack copies.
    if (Object.getPrototypeOf(bytes) !== Uint8Array.prototype) bytes = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return runDecoder(bytes);
  } finally {
    reader = saved;
  }
}

/** encode + decode, used by local execution so that it answers the same as served. */
export function roundTrip<T>(value: T): T {
  return decode(encode(value)) as T;
}

/**
 * Path and reason of the first value the codec cannot carry, or null.
 * @example findUnencodable({ a: [1, 2, () => 0] }) // { path: "$.a[2]", reason: "a function" }
 */
export function findUnencodable(value: unknown, path = "$"): { path: string; reason: string } | null {
  return walk(value, path, 1, new Map());
}

type Found = { path: string; reason: string } | null;

// Must accept exactly what the encoder accepts; depths count as the encoder counts them.
function walk(v: unknown, path: string, depth: number, ancestors: Map<object, string>): Found {
  if (typeof v === "function") return { path, reason: "a function" };
  if (typeof v === "symbol") return { path, reason: "a symbol" };
  if (typeof v !== "object" || v === null) return null;
  if (depth > MAX_DEPTH) return { path, reason: `a value nested deeper than ${MAX_DEPTH} levels` };
  const back = ancestors.get(v);
  if (back !== undefined) return { path, reason: `a circular reference (back to ${back})` };
  const proto = Object.getPrototypeOf(v);
  const plain = proto === Object.prototype || proto === Array.prototype || proto === null;
  if (!plain && proto !== Map.prototype && proto !== Set.prototype) {
    return handlers.has(proto) || v instanceof Error ? null : { path, reason: describeInstance(proto) };
  }
  ancestors.set(v, path);
  try {
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        const f = walk(v[i], `${path}[${i}]`, depth + 1, ancestors);
        if (f) return f;
      }
    } else if (v instanceof Map) {
      let i = 0;
      for (const [k, x] of v) {
        const f = walk(k, `${path}<key #${i}>`, depth + 2, ancestors) ?? walk(x, `${path}<${keyLabel(k, i)}>`, depth + 2, ancestors);
        if (f) return f;
        i++;
      }
    } else if (v instanceof Set) {
      let i = 0;
      for (const x of v) {
        const f = walk(x, `${path}<item #${i++}>`, depth + 2, ancestors);
        if (f) return f;
      }
    } else {
      if (Object.hasOwn(v, "__proto__")) return { path: `${path}["__proto__"]`, reason: "a property named __proto__" };
      for (const k of Object.keys(v)) {
        const f = walk((v as Record<string, unknown>)[k], path + propPath(k), depth + 1, ancestors);
        if (f) return f;
      }
    }
    return null;
  } finally {
    ancestors.delete(v);
  }
}

const propPath = (k: string) => (/^[A-Za-z_$][\w$]*$/.test(k) ? `.${k}` : `[${JSON.stringify(k)}]`);

function keyLabel(k: unknown, i: number): string {
  if (typeof k === "string") return JSON.stringify(k);
  if (typeof k === "bigint") return `${k}n`;
  if (typeof k === "object" && k !== null) return `key #${i}`;
  return String(k);
}

function describeInstance(proto: { constructor?: { name?: unknown } } | null): string {
  const name = proto?.constructor?.name;
  if (name === "Promise") return "a Promise";
  return typeof name === "string" && name !== "" ? `an instance of class ${name}` : "an instance of an anonymous class";
}
