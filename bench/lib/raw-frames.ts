import { rmSync } from "node:fs";
import type { Socket } from "bun";

/** Minimal length-prefixed framing for the raw baseline (kept apart from the runtime's on purpose). */
export function framed(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + body.length);
  new DataView(out.buffer).setUint32(0, body.length, true);
  out.set(body, 4);
  return out;
}

export class FrameReader {
  #buf = new Uint8Array(0);

  push(chunk: Uint8Array): Uint8Array[] {
    let buf = chunk;
    if (this.#buf.length) {
      buf = new Uint8Array(this.#buf.length + chunk.length);
      buf.set(this.#buf);
      buf.set(chunk, this.#buf.length);
    }
    const out: Uint8Array[] = [];
    let pos = 0;
    while (buf.length - pos >= 4) {
      const n = buf[pos]! | (buf[pos + 1]! << 8) | (buf[pos + 2]! << 16) | (buf[pos + 3]! * 0x1000000);
      if (buf.length - pos - 4 < n) break;
      out.push(buf.subarray(pos + 4, pos + 4 + n));
      pos += 4 + n;
    }
    this.#buf = buf.slice(pos);
    return out;
  }
}

/** Listens on a unix socket (replacing a stale file) and hands each whole frame's body to `onFrame`. */
export function listenFrames(path: string, onFrame: (socket: Socket<FrameReader>, body: Uint8Array) => void): void {
  rmSync(path, { force: true });
  Bun.listen<FrameReader>({
    unix: path,
    socket: {
      open: (s) => void (s.data = new FrameReader()),
      data(s, chunk) {
        for (const body of s.data.push(chunk)) onFrame(s, body);
      },
    },
  });
}
