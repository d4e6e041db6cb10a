/**
 * Framing for a byte stream (a unix socket): a 4-byte little-endian body length,
 * then the body.
 *
 * @example
 *   socket.write(frame(encode(message)));
 *   const frames = new FrameDecoder();
 *   // in the socket's data handler:
 *   for (const body of frames.push(chunk)) handle(decode(body));
 */

const MAX_FRAME = 0xffff_ffff;

/** 4-byte little-endian length prefix + body. */
export function frame(body: Uint8Array): Uint8Array {
  const n = body.byteLength;
  if (n > MAX_FRAME) throw new RangeError(`a frame body of ${n} bytes is over the 4 GiB limit of the length prefix; send large binary values through shared memory`);
  const out = new Uint8Array(4 + n);
  out[0] = n & 0xff;
  out[1] = (n >>> 8) & 0xff;
  out[2] = (n >>> 16) & 0xff;
  out[3] = n >>> 24;
  out.set(body, 4);
  return out;
}

/**
 * Accumulates socket chunks; returns whole bodies in order. Handles chunks split
 * anywhere, several frames per chunk, and large bodies without quadratic copying:
 * a body's buffer is allocated once its length is known and every byte is copied
 * into it exactly once.
 *
 * Each body `push` returns is its own copy, never a view of a pushed chunk: the
 * socket may reuse its chunk buffer after the data callback returns, and a body
 * stays valid for as long as the caller keeps it. `each` hands out views where it
 * can, for a reader that is done with a body when its callback returns.
 */
export class FrameDecoder {
  #header = new Uint8Array(4);
  #headerFill = 0;
  #body: Uint8Array | null = null;
  #bodyFill = 0;

  /** @param maxBodyBytes a longer length prefix means a corrupt stream; refusing it avoids allocating gigabytes for garbage. */
  constructor(private readonly maxBodyBytes = 1 << 30) {}

  push(chunk: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    this.each(chunk, (body, view) => out.push(view ? new Uint8Array(body) : body));
    return out;
  }

  /**
   * Hands each whole body to `fn` in order, without collecting them. A body
   * that lay whole in `chunk` comes as a view of it (`view` true): valid only
   * during the call, since the socket may reuse its buffer after the data
   * callback returns (Bun hands data over as a Buffer). Copy it to keep it;
   * a reader that only decodes it saves the copy and an allocation per frame.
   * An exception from `fn` does not lose the framing: the rest of the chunk is
   * still read, and the first exception is thrown after it.
   */
  each(chunk: Uint8Array, fn: (body: Uint8Array, view: boolean) => void): void {
    const end = chunk.byteLength;
    let pos = 0;
    let failed = false;
    let failure: unknown;
    const give = (body: Uint8Array, view: boolean) => {
      try {
        fn(body, view);
      } catch (e) {
        if (!failed) [failed, failure] = [true, e];
      }
    };
    while (pos < end) {
      const body = this.#body;
      if (body !== null) {
        const take = Math.min(body.byteLength - this.#bodyFill, end - pos);
        body.set(chunk.subarray(pos, pos + take), this.#bodyFill);
        this.#bodyFill += take;
        pos += take;
        if (this.#bodyFill === body.byteLength) {
          this.#body = null;
          give(body, false);
        }
        continue;
      }
      let length: number;
      if (this.#headerFill === 0 && end - pos >= 4) {
        length = readLength(chunk, pos);
        pos += 4;
        // Common case: the whole body is in this chunk; no state, no copy.
        if (end - pos >= length && length <= this.maxBodyBytes) {
          pos += length;
          give(chunk.subarray(pos - length, pos), true);
          continue;
        }
      } else {
        const take = Math.min(4 - this.#headerFill, end - pos);
        this.#header.set(chunk.subarray(pos, pos + take), this.#headerFill);
        this.#headerFill += take;
        pos += take;
        if (this.#headerFill < 4) break;
        this.#headerFill = 0;
        length = readLength(this.#header, 0);
      }
      if (length > this.maxBodyBytes) {
        throw new RangeError(`a frame announces ${length} bytes, over the limit of ${this.maxBodyBytes}: the stream is corrupt or the peer is not a serve-bin process`);
      }
      if (length === 0) give(new Uint8Array(0), false);
      else {
        this.#body = new Uint8Array(length);
        this.#bodyFill = 0;
      }
    }
    if (failed) throw failure;
  }

  /** Bytes received and not yet returned in a body. */
  get buffered(): number {
    return this.#headerFill + (this.#body === null ? 0 : 4 + this.#bodyFill);
  }
}

function readLength(b: Uint8Array, at: number): number {
  // Multiplication, not <<, so a length of 2^31 or more stays positive.
  return b[at]! + b[at + 1]! * 0x100 + b[at + 2]! * 0x10000 + b[at + 3]! * 0x1000000;
}
