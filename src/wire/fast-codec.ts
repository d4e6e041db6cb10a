/**
 * The common case of the wire codec, written out: the messages every call
 * sends (plain objects and arrays of ASCII strings, numbers, booleans, null,
 * undefined, -0 and byte arrays below the shared-memory threshold) encoded
 * and decoded by direct loops, byte for byte what msgpack's general path in
 * codec.ts makes and reads. Anything else (another kind, text that is not
 * ASCII, a byte array for shared memory, deep nesting, an extension this file
 * does not read, a malformed message) makes it give up before any side
 * effect, and codec.ts takes the whole value the general way, with its own
 * errors. test/fast-codec.test.ts holds the two to the same bytes and values.
 *
 * Why: hot, in a loop, msgpack's general path is as fast. A replica that
 * has just woken for one message runs cold, and there the smaller code
 * counts: timed inside the replicas of a 10-deployment chain, decoding a
 * call took 11-14 µs instead of 13-18, and encoding and decoding an answer
 * about 3 µs less (ARCHITECTURE.md, "The wire codec's fast path").
 */

/** Extension type numbers, as codec.ts defines them (the wire format). */
export const FAST_EXT = { undefined: 0, negZero: 1, date: 3, binary: 16 } as const;

/** Thrown inside this file only: the value leaves the fast path. */
const GIVE_UP: unique symbol = Symbol("fast-codec: not the common case");
/** Nesting past this leaves the fast path (the general one counts depth to its own limit and names the path). */
const MAX_FAST_DEPTH = 64;
/** Strings longer than this leave the fast path on decode unless ASCII (msgpack reads them with a TextDecoder). */
const TEXT_DECODER_THRESHOLD = 200;

// ---- encoding -------------------------------------------------------------

let buf = new Uint8Array(4096);
let view = new DataView(buf.buffer);
let pos = 0;
let encoding = false;
/** Size from which a Uint8Array goes to shared memory (the general path does that), or Infinity without a writer. */
let binaryLimit = Infinity;
/** Index of Uint8Array in codec.ts's binary kinds (setBinaryKinds). */
let uint8Kind = -1;

function room(n: number): void {
  if (pos + n <= buf.byteLength) return;
  const next = new Uint8Array(Math.max(buf.byteLength * 2, pos + n));
  next.set(buf.subarray(0, pos));
  buf = next;
  view = new DataView(buf.buffer);
}

/**
 * `value` as msgpack bytes (after `prefix` zero bytes), or null when it is not the common case.
 * @param binaryThreshold the byte size from which a Uint8Array would go to shared memory
 * @param shrinkBytes a result larger than this takes the buffer with it instead of a copy
 */
export function fastEncode(value: unknown, prefix: number, binaryThreshold: number, shrinkBytes: number): Uint8Array | null {
  if (encoding) return null; // a getter that encodes while we encode: leave it to the general path
  encoding = true;
  binaryLimit = binaryThreshold;
  pos = prefix;
  try {
    if (prefix) room(prefix);
    for (let i = 0; i < prefix; i++) buf[i] = 0;
    encodeValue(value, 1);
  } catch (e) {
    if (e === GIVE_UP) return null;
    throw e;
  } finally {
    encoding = false;
  }
  if (pos <= shrinkBytes) return buf.slice(0, pos);
  const out = buf.subarray(0, pos);
  buf = new Uint8Array(4096);
  view = new DataView(buf.buffer);
  return out;
}

function encodeValue(v: unknown, depth: number): void {
  switch (typeof v) {
    case "string":
      return encodeString(v);
    case "number":
      return encodeNumber(v);
    case "boolean":
      room(1);
      buf[pos++] = v ? 0xc3 : 0xc2;
      return;
    case "undefined":
      return encodeEmptyExt(FAST_EXT.undefined);
    case "object": {
      if (v === null) {
        room(1);
        buf[pos++] = 0xc0;
        return;
      }
      if (depth > MAX_FAST_DEPTH) throw GIVE_UP;
      const proto = Object.getPrototypeOf(v);
      if (proto === Array.prototype) return encodeArray(v as unknown[], depth);
      if (proto === Object.prototype || proto === null) return encodeMap(v as Record<string, unknown>, depth);
      if (proto === Uint8Array.prototype) return encodeBytes(v as Uint8Array);
      throw GIVE_UP;
    }
    default:
      throw GIVE_UP;
  }
}

function encodeNumber(n: number): void {
  room(9);
  if (Number.isSafeInteger(n)) {
    if (n === 0 && 1 / n < 0) return encodeEmptyExt(FAST_EXT.negZero);
    if (n >= 0) {
      if (n < 0x80) buf[pos++] = n;
      else if (n < 0x100) {
        buf[pos++] = 0xcc;
        buf[pos++] = n;
      } else if (n < 0x10000) {
        buf[pos++] = 0xcd;
        view.setUint16(pos, n);
        pos += 2;
      } else if (n < 0x100000000) {
        buf[pos++] = 0xce;
        view.setUint32(pos, n);
        pos += 4;
      } else {
        buf[pos++] = 0xcf;
        view.setUint32(pos, Math.floor(n / 0x100000000));
        view.setUint32(pos + 4, n >>> 0);
        pos += 8;
      }
    } else if (n >= -0x20) buf[pos++] = 0xe0 | (n + 0x20);
    else if (n >= -0x80) {
      buf[pos++] = 0xd0;
      view.setInt8(pos++, n);
    } else if (n >= -0x8000) {
      buf[pos++] = 0xd1;
      view.setInt16(pos, n);
      pos += 2;
    } else if (n >= -0x80000000) {
      buf[pos++] = 0xd2;
      view.setInt32(pos, n);
      pos += 4;
    } else {
      buf[pos++] = 0xd3;
      // As msgpack writes an int64 from a number: high word by floor division, low word as its bits.
      view.setInt32(pos, Math.floor(n / 0x100000000));
      view.setUint32(pos + 4, n >>> 0);
      pos += 8;
    }
    return;
  }
  buf[pos++] = 0xcb;
  view.setFloat64(pos, n);
  pos += 8;
}

/**
 * A length header as msgpack writes it: the fix form below `fixLimit` (`fix` + n), else the
 * smallest of the 8-bit (when the type has one, `c8` not 0), 16-bit and 32-bit forms.
 */
function lengthHeader(n: number, fix: number, fixLimit: number, c8: number, c16: number, c32: number): void {
  room(5);
  if (n < fixLimit) buf[pos++] = fix + n;
  else if (c8 !== 0 && n < 0x100) {
    buf[pos++] = c8;
    buf[pos++] = n;
  } else if (n < 0x10000) {
    buf[pos++] = c16;
    view.setUint16(pos, n);
    pos += 2;
  } else {
    buf[pos++] = c32;
    view.setUint32(pos, n);
    pos += 4;
  }
}

/** ASCII only: its UTF-8 is its char codes. Other text leaves the fast path (msgpack's own encoder keeps lone surrogates). */
function encodeString(s: string): void {
  const n = s.length;
  lengthHeader(n, 0xa0, 32, 0xd9, 0xda, 0xdb);
  room(n);
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) throw GIVE_UP;
    buf[pos++] = c;
  }
}

function encodeArray(a: unknown[], depth: number): void {
  const n = a.length;
  lengthHeader(n, 0x90, 16, 0, 0xdc, 0xdd);
  for (let i = 0; i < n; i++) encodeValue(a[i], depth + 1);
}

function encodeMap(o: Record<string, unknown>, depth: number): void {
  const keys = Object.keys(o);
  const n = keys.length;
  lengthHeader(n, 0x80, 16, 0, 0xde, 0xdf);
  for (let i = 0; i < n; i++) {
    const k = keys[i]!;
    if (k === "__proto__") throw GIVE_UP; // the general path refuses it and names where
    encodeString(k);
    encodeValue(o[k], depth + 1);
  }
}

function encodeEmptyExt(type: number): void {
  room(3);
  buf[pos++] = 0xc7;
  buf[pos++] = 0;
  buf[pos++] = type;
}

function encodeBytes(b: Uint8Array): void {
  const size = b.byteLength;
  if (size >= binaryLimit || uint8Kind < 0) throw GIVE_UP; // shared memory: the general path puts it there
  // fixext 1, 2, 4, 8 and 16 for those sizes; else ext 8, 16 or 32.
  const fixext = size === 1 ? 0xd4 : size === 2 ? 0xd5 : size === 4 ? 0xd6 : size === 8 ? 0xd7 : size === 16 ? 0xd8 : 0;
  if (fixext !== 0) {
    room(1);
    buf[pos++] = fixext;
  } else lengthHeader(size, 0, 0, 0xc7, 0xc8, 0xc9);
  room(1 + size);
  buf[pos++] = FAST_EXT.binary + uint8Kind;
  buf.set(b, pos);
  pos += size;
}

// ---- decoding -------------------------------------------------------------

let inBytes: Uint8Array = new Uint8Array(0);
let at = 0;
/**
 * Numbers are read byte by byte, and floats through this scratch, not through a
 * DataView of the input: a frame body is a view of the socket's Buffer, and
 * reading its `.buffer` (for a DataView, or a plain Uint8Array over it) makes
 * JSC build an ArrayBuffer object for it, each message (cold: 1-2 µs).
 */
const scratchBytes = new Uint8Array(8);
const scratch = new DataView(scratchBytes.buffer);
let decoding = false;
/** Builds a value of each binary kind from bytes the decoder owns (codec.ts's kinds, by index). */
let binaryMakers: ((b: Uint8Array) => unknown)[] = [];

/** codec.ts's binary kinds, by their index in the wire format, and which of them is Uint8Array. */
export function setBinaryKinds(makers: ((b: Uint8Array) => unknown)[], uint8: number): void {
  binaryMakers = makers;
  uint8Kind = uint8;
}

const latin1Slice = typeof Buffer === "function" ? (Buffer.prototype as unknown as { latin1Slice?: (this: Uint8Array, start: number, end: number) => string }).latin1Slice : undefined;
const textDecoder = new TextDecoder();

/** Map keys seen before, by byte length (as msgpack caches them): the same string, no new one per message. */
const keyCache: { bytes: Uint8Array; key: string }[][] = [];
const KEY_CACHE_MAX_LENGTH = 16;
const KEY_CACHE_PER_LENGTH = 16;

/** The value `bytes` holds, or `GIVE_UP_RESULT` when it is not the common case (nothing was kept). */
export const GIVE_UP_RESULT: unique symbol = Symbol("fast-codec: decode it the general way");

export function fastDecode(bytes: Uint8Array): unknown {
  if (decoding || latin1Slice === undefined) return GIVE_UP_RESULT;
  decoding = true;
  inBytes = bytes;
  at = 0;
  try {
    const v = decodeValue(1);
    if (at !== bytes.byteLength) return GIVE_UP_RESULT; // extra bytes: the general path says so
    return v;
  } catch (e) {
    if (e === GIVE_UP || e instanceof RangeError) return GIVE_UP_RESULT; // RangeError: a value the loops could not build; the general path reports it
    throw e;
  } finally {
    decoding = false;
    inBytes = EMPTY;
  }
}
const EMPTY = new Uint8Array(0);

const u16 = (i: number): number => (inBytes[i]! << 8) | inBytes[i + 1]!;
const u32 = (i: number): number => inBytes[i]! * 0x1000000 + ((inBytes[i + 1]! << 16) | (inBytes[i + 2]! << 8) | inBytes[i + 3]!);
const i32 = (i: number): number => (inBytes[i]! << 24) | (inBytes[i + 1]! << 16) | (inBytes[i + 2]! << 8) | inBytes[i + 3]!;
function float(i: number, n: 4 | 8): number {
  for (let k = 0; k < n; k++) scratchBytes[k] = inBytes[i + k]!;
  return n === 4 ? scratch.getFloat32(0) : scratch.getFloat64(0);
}
/**
 * A fresh plain Uint8Array holding `inBytes[start, end)`. Not `inBytes.slice()`:
 * on a Buffer (a socket's frame) that is a view, which a decoded value must
 * never be.
 */
function copyOut(start: number, end: number): Uint8Array {
  const out = new Uint8Array(end - start);
  if (end - start > 64) out.set(inBytes.subarray(start, end));
  else for (let k = start; k < end; k++) out[k - start] = inBytes[k]!;
  return out;
}

function need(n: number): void {
  if (at + n > inBytes.byteLength) throw GIVE_UP;
}

function decodeValue(depth: number): unknown {
  need(1);
  const b = inBytes[at++]!;
  if (b < 0x80) return b;
  if (b >= 0xe0) return b - 0x100;
  if (b >= 0xa0 && b < 0xc0) return decodeString(b - 0xa0, false);
  if (depth > MAX_FAST_DEPTH) throw GIVE_UP;
  if (b >= 0x90 && b < 0xa0) return decodeArray(b - 0x90, depth);
  if (b >= 0x80 && b < 0x90) return decodeMap(b - 0x80, depth);
  switch (b) {
    case 0xc0: return null;
    case 0xc2: return false;
    case 0xc3: return true;
    case 0xcc: need(1); return inBytes[at++]!;
    case 0xcd: need(2); at += 2; return u16(at - 2);
    case 0xce: need(4); at += 4; return u32(at - 4);
    case 0xcf: need(8); at += 8; return u32(at - 8) * 0x100000000 + u32(at - 4);
    case 0xd0: need(1); at += 1; return (inBytes[at - 1]! << 24) >> 24;
    case 0xd1: need(2); at += 2; return (u16(at - 2) << 16) >> 16;
    case 0xd2: need(4); at += 4; return i32(at - 4);
    case 0xd3: need(8); at += 8; return i32(at - 8) * 0x100000000 + u32(at - 4);
    case 0xca: need(4); at += 4; return float(at - 4, 4);
    case 0xcb: need(8); at += 8; return float(at - 8, 8);
    case 0xd9: need(1); return decodeString(inBytes[at++]!, false);
    case 0xda: need(2); at += 2; return decodeString(u16(at - 2), false);
    case 0xdb: need(4); at += 4; return decodeString(u32(at - 4), false);
    case 0xdc: need(2); at += 2; return decodeArray(u16(at - 2), depth);
    case 0xdd: need(4); at += 4; return decodeArray(u32(at - 4), depth);
    case 0xde: need(2); at += 2; return decodeMap(u16(at - 2), depth);
    case 0xdf: need(4); at += 4; return decodeMap(u32(at - 4), depth);
    case 0xd4: return decodeExt(1);
    case 0xd5: return decodeExt(2);
    case 0xd6: return decodeExt(4);
    case 0xd7: return decodeExt(8);
    case 0xd8: return decodeExt(16);
    case 0xc7: need(1); return decodeExt(inBytes[at++]!);
    case 0xc8: need(2); at += 2; return decodeExt(u16(at - 2));
    case 0xc9: need(4); at += 4; return decodeExt(u32(at - 4));
    default:
      throw GIVE_UP; // bin (a view of the input in msgpack's reading), or a byte msgpack refuses
  }
}

function decodeString(n: number, key: boolean): string {
  need(n);
  const start = at;
  const end = at + n;
  if (key && n <= KEY_CACHE_MAX_LENGTH) {
    const bucket = (keyCache[n] ??= []);
    for (let i = 0; i < bucket.length; i++) {
      const c = bucket[i]!;
      let j = 0;
      while (j < n && c.bytes[j] === inBytes[start + j]) j++;
      if (j === n) {
        at = end;
        return c.key;
      }
    }
    const s = asciiOrGiveUp(start, end);
    if (bucket.length < KEY_CACHE_PER_LENGTH) bucket.push({ bytes: copyOut(start, end), key: s });
    at = end;
    return s;
  }
  if (n > TEXT_DECODER_THRESHOLD) {
    at = end;
    return textDecoder.decode(inBytes.subarray(start, end)); // msgpack's own choice at this size
  }
  const s = asciiOrGiveUp(start, end);
  at = end;
  return s;
}

function asciiOrGiveUp(start: number, end: number): string {
  for (let i = start; i < end; i++) if (inBytes[i]! >= 0x80) throw GIVE_UP;
  return latin1Slice!.call(inBytes, start, end);
}

function decodeArray(n: number, depth: number): unknown[] {
  if (n > inBytes.byteLength - at) throw GIVE_UP; // each element takes a byte at least: a count past the input is a bad message
  const out = new Array(n);
  for (let i = 0; i < n; i++) out[i] = decodeValue(depth + 1);
  return out;
}

function decodeMap(n: number, depth: number): Record<string, unknown> {
  if (n > inBytes.byteLength - at) throw GIVE_UP;
  const out: Record<string, unknown> = {};
  for (let i = 0; i < n; i++) {
    need(1);
    const b = inBytes[at++]!;
    let key: string;
    if (b >= 0xa0 && b < 0xc0) key = decodeString(b - 0xa0, true);
    else if (b === 0xd9) {
      need(1);
      key = decodeString(inBytes[at++]!, true);
    } else throw GIVE_UP; // a key of another type: msgpack's rules apply
    if (key === "__proto__") throw GIVE_UP; // msgpack refuses it, with its message
    out[key] = decodeValue(depth + 1);
  }
  return out;
}

function decodeExt(size: number): unknown {
  need(1 + size);
  const type = (inBytes[at]! << 24) >> 24;
  const start = at + 1;
  const end = start + size;
  if (type === FAST_EXT.undefined && size === 0) {
    at = end;
    return undefined;
  }
  if (type === FAST_EXT.negZero && size === 0) {
    at = end;
    return -0;
  }
  if (type === FAST_EXT.date && size === 8) {
    at = end;
    return new Date(float(start, 8));
  }
  const make = type >= FAST_EXT.binary ? binaryMakers[type - FAST_EXT.binary] : undefined;
  if (make !== undefined) {
    const v = make(copyOut(start, end));
    at = end;
    return v;
  }
  throw GIVE_UP; // shared memory, BigInt, Map, Set, Error, a kept result, an unknown kind: the general path
}
