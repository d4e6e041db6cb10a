import type { Socket } from "bun";
import { ServeError } from "../../error.ts";
import { decode, encodeFrame, type BinaryReader, type BinaryWriter } from "../../wire/codec.ts";
import { FrameDecoder } from "./frame.ts";
import type { DataMessage } from "./messages.ts";

export interface ConnectionHandlers {
  /** A connection is open (for TCP: authenticated); before its first message. */
  open?(conn: Connection): void;
  message(msg: DataMessage, conn: Connection): void;
  close(conn: Connection): void;
}

/** Shared memory for large binary values, when enabled. */
export interface BinaryChannel {
  writer?: BinaryWriter;
  reader?: BinaryReader;
  /** One connection's side of the channel; without it, `writer` and `reader` are used as they are. */
  link?(): BinaryLink;
}

/** A BinaryChannel as one connection uses it: the blocks a message puts share the message's fate. */
export interface BinaryLink {
  writer?: BinaryWriter;
  reader?: BinaryReader;
  /** Frees blocks without reading them: what an undecodable message still names. */
  releaser?: BinaryReader;
  /**
   * The message just encoded will be sent: its blocks now wait for their receiver.
   * May return frames (already length-prefixed) that must go out just before it: a link
   * without shared memory sends large values that way (InlineChunks).
   */
  commit(): void | Uint8Array[];
  /** Encoding failed: frees the blocks put for it. */
  abort(): void;
  /** The connection closed: blocks it sent that nobody read become reclaimable. */
  close(): void;
  /** Takes a frame that is not a message (a chunk of a large value); false: decode it as a message. */
  accept?(body: Uint8Array): boolean;
}

const EMPTY: BinaryReader = { get: () => new Uint8Array(0) };

/**
 * One framed, msgpack-encoded message stream over a unix socket or an
 * authenticated TCP link (transport.ts). Writes made
 * in the same tick leave in one `write` call; what the kernel does not take
 * waits for `drain`, in order.
 */
export class Connection {
  readonly #decoder = new FrameDecoder();
  #queued: Uint8Array[] = [];
  #scheduled = false;
  #backlog: Uint8Array | null = null;
  readonly #link: BinaryLink;
  closed = false;

  constructor(
    readonly socket: Socket<Connection>,
    readonly handlers: ConnectionHandlers,
    binary: BinaryChannel = {},
  ) {
    this.#link = binary.link?.() ?? { writer: binary.writer, reader: binary.reader, commit() {}, abort() {}, close() {} };
  }

  /** @throws EncodeError when `msg` holds a value the codec cannot carry (nothing is sent). */
  send(msg: DataMessage): void {
    if (this.closed) return;
    let out: Uint8Array;
    try {
      out = encodeFrame(msg, { binary: this.#link.writer });
    } catch (e) {
      this.#link.abort();
      throw e;
    }
    const ahead = this.#link.commit();
    if (ahead) for (const f of ahead) this.#queued.push(f);
    this.#queued.push(out);
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
      if (this.#link.accept?.(body)) continue;
      let msg: DataMessage;
      try {
        msg = decode(body, { binary: this.#link.reader }) as DataMessage;
      } catch (e) {
        this.#undecodable(body, e as Error);
        continue;
      }
      this.handlers.message(msg, this);
    }
  }

  /**
   * A message whose values could not all be read (e.g. its sender's shared
   * memory is gone): the call it belongs to fails with 503 at once instead of
   * waiting for a timeout, and blocks it still names are freed.
   */
  #undecodable(body: Uint8Array, err: Error): void {
    console.error(`serve-bin: dropped an undecodable message: ${err.message}`);
    let msg: DataMessage | undefined;
    try {
      msg = decode(body, { binary: this.#link.releaser ?? EMPTY }) as DataMessage;
    } catch {
      return;
    }
    if (typeof msg?.id !== "number") return;
    const e = new ServeError("unavailable", `a value of this call could not be read (${err.message}); retry the request`).toJSON();
    if (msg.t === "call") this.send({ t: "err", id: msg.id, e });
    else if (msg.t === "ok" || msg.t === "chunk") this.handlers.message({ t: "err", id: msg.id, e }, this);
  }

  onClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.#link.close();
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
