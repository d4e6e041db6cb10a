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

/** Queued bytes past which a turn's writes leave at once rather than at the end of the turn. */
const TURN_BYTES = 256 * 1024;
/**
 * A turn that has lasted this long (ms) since its first write writes again at the next microtask:
 * a producer that computes for long in one turn (a stream's chunks between awaits that never yield
 * to the event loop) still has its messages leave as they are made, at most this late.
 */
const TURN_MS = 1;
/** A frame at least this large is written on its own: copying it into a batch would cost more than the call saves. */
const OWN_WRITE_BYTES = 64 * 1024;

/**
 * One framed, msgpack-encoded message stream over a unix socket or an
 * authenticated TCP link (transport.ts).
 *
 * Writes are batched per event-loop turn, in order: the first message of a
 * turn leaves in a microtask (a lone call waits for nothing), and whatever is
 * sent after it in the same turn (other HTTP requests' calls, each handled in
 * its own callback, other replies) leaves together when the turn ends
 * (setImmediate), in one `write`, or after TURN_MS in a long turn. A busy
 * caller then makes two writes per turn instead of one per request, and its
 * peer wakes once for the batch.
 * What the kernel does not take waits for `drain`, in order.
 */
export class Connection {
  readonly #decoder = new FrameDecoder();
  /** Frames not yet handed to the socket, in order (a partly written one first, as its unwritten rest). */
  #queued: Uint8Array[] = [];
  #queuedBytes = 0;
  /** A microtask will write the queue. */
  #soon = false;
  /** Something was written this turn; the turn's end (an immediate) writes what came after it. */
  #turn = false;
  /** When this turn last wrote at a microtask (performance.now()). */
  #turnAt = 0;
  /** The kernel took less than it was offered: nothing more is written until `drain`. */
  #blocked = false;
  readonly #link: BinaryLink;
  closed = false;
  /** Socket writes made so far (for tests and diagnostics: batching shows as fewer writes than messages). */
  writes = 0;

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
    if (ahead) for (const f of ahead) this.#push(f);
    this.#push(out);
    if (this.#blocked || this.#soon) return;
    if (!this.#turn || this.#queuedBytes >= TURN_BYTES || performance.now() - this.#turnAt >= TURN_MS) {
      this.#soon = true;
      queueMicrotask(this.#flushSoon);
    }
  }

  #push(f: Uint8Array): void {
    this.#queued.push(f);
    this.#queuedBytes += f.byteLength;
  }

  readonly #flushSoon = (): void => {
    this.#soon = false;
    this.#flush();
    this.#turnAt = performance.now();
    if (!this.#turn && !this.closed) {
      this.#turn = true;
      setImmediate(this.#endTurn);
    }
  };

  readonly #endTurn = (): void => {
    this.#turn = false;
    this.#flush();
  };

  /** Hands the queue to the socket: small frames together in one write, large ones on their own, until the kernel stops taking. */
  #flush(): void {
    if (this.closed || this.#blocked) return;
    const q = this.#queued;
    if (q.length === 0) return; // a turn's end with nothing sent after its first write
    let i = 0;
    while (i < q.length) {
      let out = q[i]!;
      let j = i + 1;
      if (out.byteLength < OWN_WRITE_BYTES) {
        let len = out.byteLength;
        while (j < q.length && q[j]!.byteLength < OWN_WRITE_BYTES && len < TURN_BYTES) len += q[j++]!.byteLength;
        if (j > i + 1) out = concat(q, i, j, len);
      }
      this.writes++;
      const n = this.socket.write(out);
      if (n < out.byteLength) {
        // The rest, and everything after it, waits for drain.
        this.#blocked = true;
        q.splice(0, j, out.subarray(Math.max(n, 0)));
        this.#queuedBytes = 0;
        for (const f of q) this.#queuedBytes += f.byteLength;
        return;
      }
      i = j;
    }
    this.#queued = [];
    this.#queuedBytes = 0;
  }

  /** Bun calls this when the socket can take more. */
  onDrain(): void {
    if (!this.#blocked) return;
    this.#blocked = false;
    this.#flush();
  }

  onData(chunk: Uint8Array): void {
    this.#decoder.each(chunk, this.#onFrame);
  }

  /** One frame's body, possibly a view of the socket's read buffer: decoded (values never alias it) and not kept. */
  readonly #onFrame = (body: Uint8Array): void => {
    if (this.#link.accept?.(body)) return;
    let msg: DataMessage;
    try {
      msg = decode(body, { binary: this.#link.reader }) as DataMessage;
    } catch (e) {
      this.#undecodable(body, e as Error);
      return;
    }
    this.handlers.message(msg, this);
  };

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
    // What was sent before close leaves before the end of the stream (as far as the kernel takes it).
    this.#flush();
    this.socket.end();
    this.onClose();
  }
}

/** parts[from..to) in one buffer of `len` bytes. */
function concat(parts: Uint8Array[], from: number, to: number, len: number): Uint8Array {
  const out = new Uint8Array(len);
  let off = 0;
  for (let k = from; k < to; k++) {
    out.set(parts[k]!, off);
    off += parts[k]!.byteLength;
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
