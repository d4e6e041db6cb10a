/**
 * Large binary values over a link without shared memory (a TCP peer, SPEC
 * §9): each value of at least `CHUNK_BYTES` leaves the message and travels
 * ahead of it as a run of chunk frames, in order on the same connection; the
 * message keeps a 12-byte descriptor (value id, length). No frame is larger
 * than a chunk plus its header, so a value is not limited by the 4 GiB length
 * prefix, and the receiver allocates each value once, at its announced length.
 *
 * A chunk frame's body starts with 0xc1, the one byte msgpack never uses, so it
 * cannot be mistaken for a message:
 *   [0xc1][u32 value id][f64 total length][f64 offset][bytes]   (little-endian)
 *
 * @example
 *   new Connection(socket, handlers, new InlineChunks()); // what a TCP link uses instead of SharedMemory
 */
import type { BinaryChannel, BinaryLink } from "./connection.ts";

/** Bytes per chunk frame, and the smallest value sent as chunks (smaller ones stay inside their message). */
export const CHUNK_BYTES = 256 * 1024;
/** A value announced larger than this is refused: the stream is corrupt (the FrameDecoder's limit for one frame). */
export const MAX_VALUE_BYTES = 1 << 30;

const MARK = 0xc1;
const HEAD = 21;

const stats = { sent: 0, sentBytes: 0, received: 0 };

/**
 * This process's values sent and received as chunks (for /metrics and tests).
 * @example chunkStats() // { sent: 2, sentBytes: 33554432, received: 2 }
 */
export function chunkStats(): { sent: number; sentBytes: number; received: number } {
  return { ...stats };
}

interface Incoming {
  bytes: Uint8Array;
  filled: number;
}

/** Per-connection chunking of large binary values; stateless itself, each link keeps its own values. */
export class InlineChunks implements BinaryChannel {
  link(): BinaryLink {
    let nextId = 1;
    let outgoing: Uint8Array[] = [];
    const incoming = new Map<number, Incoming>();
    const forget = (d: Uint8Array) => {
      const v = new DataView(d.buffer, d.byteOffset, d.byteLength);
      const id = v.getUint32(0, true);
      const got = incoming.get(id);
      incoming.delete(id);
      return { got, length: v.getFloat64(4, true) };
    };
    return {
      writer: {
        thresholdBytes: CHUNK_BYTES,
        put(bytes) {
          const id = nextId++ >>> 0;
          stats.sent++;
          stats.sentBytes += bytes.byteLength;
          for (let off = 0; off < bytes.byteLength; off += CHUNK_BYTES) outgoing.push(chunkFrame(id, bytes, off));
          const d = new Uint8Array(12);
          const v = new DataView(d.buffer);
          v.setUint32(0, id, true);
          v.setFloat64(4, bytes.byteLength, true);
          return d;
        },
      },
      reader: {
        get(d) {
          const { got, length } = forget(d);
          if (!got || got.filled !== length || got.bytes.byteLength !== length) {
            throw new Error(`a binary value of ${length} bytes did not arrive whole (${got?.filled ?? 0} bytes came)`);
          }
          stats.received++;
          return got.bytes;
        },
      },
      releaser: {
        get(d) {
          forget(d);
          return new Uint8Array(0);
        },
      },
      commit() {
        const out = outgoing;
        outgoing = [];
        return out;
      },
      abort() {
        outgoing = [];
      },
      close() {
        outgoing = [];
        incoming.clear();
      },
      accept(body) {
        if (body[0] !== MARK) return false;
        if (body.byteLength < HEAD) return dropped("a chunk frame is truncated");
        const v = new DataView(body.buffer, body.byteOffset, body.byteLength);
        const id = v.getUint32(1, true);
        const total = v.getFloat64(5, true);
        const offset = v.getFloat64(13, true);
        const part = body.subarray(HEAD);
        let value = incoming.get(id);
        if (offset === 0 && !value) {
          if (!Number.isSafeInteger(total) || total <= 0 || total > MAX_VALUE_BYTES) return dropped(`a chunked value announces ${total} bytes, over the limit of ${MAX_VALUE_BYTES}`);
          incoming.set(id, (value = { bytes: new Uint8Array(total), filled: 0 }));
        }
        // Out of order or past the end cannot happen on one TCP stream from a serve-bin peer: drop the value,
        // and the message naming it fails with 503 (Connection's undecodable path).
        if (!value || offset !== value.filled || offset + part.byteLength > value.bytes.byteLength) {
          incoming.delete(id);
          return dropped(`a chunk of value ${id} arrived out of order`);
        }
        value.bytes.set(part, offset);
        value.filled += part.byteLength;
        return true;
      },
    };
  }
}

function dropped(why: string): true {
  console.error(`serve-bin: dropped a chunk frame: ${why}`);
  return true;
}

/** One chunk, already length-prefixed for the stream (one copy of the value's bytes). */
function chunkFrame(id: number, bytes: Uint8Array, off: number): Uint8Array {
  const n = Math.min(CHUNK_BYTES, bytes.byteLength - off);
  const out = new Uint8Array(4 + HEAD + n);
  const v = new DataView(out.buffer);
  v.setUint32(0, HEAD + n, true);
  out[4] = MARK;
  v.setUint32(5, id, true);
  v.setFloat64(9, bytes.byteLength, true);
  v.setFloat64(17, off, true);
  out.set(bytes.subarray(off, off + n), 4 + HEAD);
  return out;
}
