import type { Socket } from "bun";
import { decode, encode, type BinaryReader, type BinaryWriter } from "./codec.ts";
import { FrameDecoder, frame } from "./frame.ts";
import type { DataMessage } from "./messages.ts";

export interface ConnectionHandlers {
  message(msg: DataMessage, conn: Connection): void;
  close(conn: Connection): void;
}

/** Shared memory for large binary values, when enabled. */
export interface BinaryChannel {
  writer?: BinaryWriter;
  reader?: BinaryReader;
}

/**
 * One framed, msgpack-encoded message stream over a unix socket. Writes made
 * in the same tick leave in one `write` call; what the kernel does not take
 * waits for `drain`, in order.
 */
export class Connection {
  readonly #decoder = new FrameDecoder();
  #queued: Uint8Array[] = [];
  #scheduled = false;
  #backlog: Uint8Array | null = null;
  closed = false;

  constructor(
    readonly socket: Socket<Connection>,
    readonly handlers: ConnectionHandlers,
    readonly binary: BinaryChannel = {},
  ) {}

  send(msg: DataMessage): void {
    if (this.closed) return;
    this.#queued.push(frame(encode(msg, { binary: this.binary.writer })));
    if (!this.#scheduled) {
      this.#scheduled = true;
      queueMicrotask(() => this.#flush());
    }
  }

  #flush(): void {
    this.#scheduled = false;
    if (this.closed || this.#queued.length === 0) return;
    const parts = this.#backlog ? [this.#backlog, ...this.#queued] : this.#queued;
    this.#queued = [];
    this.#backlog = null;
    const out = parts.length === 1 ? parts[0]! : concat(parts);
    this.#write(out);
  }

  #write(out: Uint8Array): void {
    const n = this.socket.write(out);
    if (n < out.length) this.#backlog = out.subarray(Math.max(n, 0));
  }

  /** Bun calls this when the socket can take more. */
  onDrain(): void {
    if (!this.#backlog) return;
    const out = this.#backlog;
    this.#backlog = null;
    this.#write(out);
    if (!this.#backlog && this.#queued.length) this.#flush();
  }

  onData(chunk: Uint8Array): void {
    for (const body of this.#decoder.push(chunk)) {
      let msg: DataMessage;
      try {
        msg = decode(body, { binary: this.binary.reader }) as DataMessage;
      } catch (e) {
        console.error(`serve-bin: dropped an undecodable message: ${(e as Error).message}`);
        continue;
      }
      this.handlers.message(msg, this);
    }
  }

  onClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.handlers.close(this);
  }

  close(): void {
    this.socket.end();
    this.onClose();
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = new Uint8Array(len);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Socket handlers that forward to the Connection stored in `socket.data`. */
export const socketHandlers = {
  data(socket: Socket<Connection>, chunk: Uint8Array) {
    socket.data.onData(chunk);
  },
  drain(socket: Socket<Connection>) {
    socket.data.onDrain();
  },
  close(socket: Socket<Connection>) {
    socket.data?.onClose();
  },
  error(socket: Socket<Connection>) {
    socket.data?.onClose();
  },
};
