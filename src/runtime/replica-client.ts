import { ServeError } from "../error.ts";
import type { BinaryChannel, Connection } from "./channel/connection.ts";
import { dialLink, type LinkOptions } from "./channel/transport.ts";
import type { DataMessage, ReplicaInfo } from "./channel/messages.ts";
import type { OutlierState } from "./outlier.ts";

/** Optional fields of a call message: the multiplexed model id, the trace context and queue wait. */
export type CallExtra = Pick<Extract<DataMessage, { t: "call" }>, "x" | "tp" | "q">;

/** Calls that failed because their replica's connection closed: "unsent" never left this process; "inflight" may have run. */
const lost = new WeakMap<ServeError, "unsent" | "inflight">();

/** Whether `e` is a call lost with its replica, and whether the replica could have run it. */
export function lostCall(e: unknown): "unsent" | "inflight" | undefined {
  return e instanceof ServeError ? lost.get(e) : undefined;
}

/** Receives a streamed call's chunks in order. */
export interface ChunkSink {
  chunk(v: unknown): void;
  end(): void;
  fail(e: ServeError): void;
  /** Told which replica and call id took the call (a stream's consumer sends its credit there); again on a resend. */
  sent?(client: ReplicaClient, id: number): void;
}

/** Where a call's end goes: its value, or its error (what Promise.withResolvers gives, or an object of the caller's). */
export interface Settle {
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

/** A call waiting for its answer: told its value, "busy" (try another replica) or its error; for a stream, where its chunks go. */
export interface PendingCall {
  ok(value: unknown): void;
  busy(): void;
  reject(e: ServeError): void;
  sink?: ChunkSink;
}

/** What a call sends: which method (null: the function or `__call__`), its arguments, its request. */
export interface OutgoingCall {
  method: string | null;
  args: unknown[];
  requestId: string;
  /** Receives a streamed result's chunks. */
  sink?: ChunkSink;
  /** Keep the result in the replica and answer a KeptRef (a forwarded response). */
  keep?: boolean;
}

/**
 * Settles the call a replica's answer is for (ok, busy, err, chunk, end),
 * removing it from `pending` once it has ended; an answer to no pending call
 * is dropped. Both a socket's caller and an ingress calling itself in process
 * read answers through this.
 */
export function settleAnswer(pending: Map<number, PendingCall>, msg: DataMessage): void {
  const p = pending.get(msg.id);
  if (!p) return;
  switch (msg.t) {
    case "ok":
      pending.delete(msg.id);
      return p.ok(msg.v);
    case "busy":
      pending.delete(msg.id);
      return p.busy();
    case "err": {
      pending.delete(msg.id);
      const e = ServeError.fromJSON(msg.e);
      p.sink?.fail(e);
      return p.reject(e);
    }
    case "chunk":
      return p.sink?.chunk(msg.v);
    case "end":
      pending.delete(msg.id);
      p.sink?.end();
      return p.ok(undefined);
    case "call":
    case "cancel":
    case "credit":
    case "fetch":
    case "release":
      return; // caller → replica only
    case "drained":
      return; // about the connection, not one call (ReplicaClient)
    default:
      return exhaustive(msg);
  }
}

/**
 * The caller's side of one replica's socket: connects on first use, numbers
 * calls, matches answers to them, and fails everything in flight at once
 * (503) when the replica goes away.
 */
export class ReplicaClient implements OutlierState {
  inflight = 0;
  /** Outlier detection, as this caller sees this replica (outlier.ts). */
  failures = 0;
  ejected = false;
  ejections = 0;
  returnedAt = 0;
  /** Until when this replica said it is full; routers skip it meanwhile. */
  busyUntil = 0;
  dead = false;
  /** Multiplexed model ids this replica said it has loaded (in its last answer to a call that named one). */
  models: ReadonlySet<string> = new Set();
  /** Left the routing table (the replica is draining): close once the calls in flight have answered. */
  #retiring = false;
  #conn: Promise<Connection> | null = null;
  #open: Connection | null = null;
  readonly #pending = new Map<number, PendingCall>();
  #nextId = 1;

  constructor(
    readonly info: ReplicaInfo,
    readonly deployment: string,
    readonly binary: BinaryChannel,
    readonly onDead: (client: ReplicaClient) => void,
    readonly links: LinkOptions = {},
  ) {}

  #connect(): Promise<Connection> {
    if (!this.#conn) {
      const handlers = {
        message: (msg: DataMessage) => this.#onMessage(msg),
        close: () => this.#onClose(),
      };
      // The address picks the transport: a unix socket path, or tcp://host:port (authenticated with the cluster token).
      this.#conn = dialLink(this.info.socket, handlers, this.binary, this.links).then((c) => (this.#open = c));
      // A failed TCP handshake says why (no token, wrong token); that reason is what the calls fail with.
      this.#conn.catch((e: Error) => this.#onClose(e instanceof ServeError ? e : undefined));
    }
    return this.#conn;
  }

  /** Runs `fn` with the connection: at once when it is open (the common case), else once it is. */
  #with(fn: (c: Connection) => void): void {
    if (this.#open) fn(this.#open);
    else this.#connect().then(fn, () => {});
  }

  /**
   * Sends one call; its answer settles `p` (kept until then). Returns the call's id.
   * @throws ServeError ("encode") when an argument cannot be carried and the connection is open: nothing was sent.
   */
  send(p: PendingCall, c: OutgoingCall, extra?: CallExtra): number {
    const id = this.#nextId++;
    if (this.dead) {
      const e = this.#deadError("unsent");
      queueMicrotask(() => p.reject(e));
      return id;
    }
    this.#pending.set(id, p);
    if (this.#open) {
      this.#write(this.#open, id, c, extra);
      return id;
    }
    this.#connect().then(
      (conn) => {
        try {
          this.#write(conn, id, c, extra);
        } catch (e) {
          p.reject(e as ServeError);
        }
      },
      () => {},
    );
    return id;
  }

  /** Writes call `id`; an argument the codec cannot carry leaves nothing sent (its shared-memory blocks are freed) and throws. */
  #write(conn: Connection, id: number, c: OutgoingCall, extra?: CallExtra): void {
    // Built field by field: an object spread per call showed in profiles (copyDataProperties).
    const msg: Extract<DataMessage, { t: "call" }> = { t: "call", id, m: c.method, a: c.args, r: c.requestId };
    if (c.sink) msg.s = true;
    if (c.keep) msg.k = true;
    if (extra) {
      if (extra.x !== undefined) msg.x = extra.x;
      if (extra.tp !== undefined) msg.tp = extra.tp;
      if (extra.q !== undefined) msg.q = extra.q;
    }
    try {
      conn.send(msg);
    } catch (e) {
      this.#pending.delete(id);
      throw ServeError.fromUser(e, this.deployment);
    }
  }

  /** Fetches the result this replica kept under `token`. */
  fetch(token: string): Promise<unknown> {
    const id = this.#nextId++;
    return new Promise<unknown>((resolve, reject) => {
      if (this.dead) return reject(this.#deadError());
      this.#pending.set(id, { ok: resolve, busy: () => resolve(undefined), reject });
      this.#with((c) => c.send({ t: "fetch", id, k: token }));
    });
  }

  /** Tells this replica to drop the result it kept under `token`. */
  release(token: string): void {
    if (!this.dead) this.#with((c) => c.send({ t: "release", id: 0, k: token }));
  }

  /** Tells the replica to abort call `id`, and stops waiting for it. */
  cancel(id: number): void {
    if (!this.#pending.delete(id)) return;
    if (this.#conn) this.#with((c) => c.send({ t: "cancel", id }));
    if (this.#retiring && this.#pending.size === 0) this.close();
  }

  credit(id: number, n: number): void {
    if (this.#conn) this.#with((c) => c.send({ t: "credit", id, n }));
  }

  #onMessage(msg: DataMessage): void {
    if (msg.t === "drained") return this.#drained();
    this.#handle(msg);
    if (this.#retiring && this.#pending.size === 0) this.close();
  }

  #handle(msg: DataMessage): void {
    // The models a replica holds ride on its answers; only an answer to a call of ours counts.
    if (msg.t === "ok" && msg.mm && this.#pending.has(msg.id)) this.models = new Set(msg.mm);
    settleAnswer(this.#pending, msg);
  }

  #deadError(how?: "unsent" | "inflight"): ServeError {
    const e = new ServeError("unavailable", `replica ${this.info.id} of ${this.deployment} went away while handling the request; retry it`, {
      deployment: this.deployment,
    });
    if (how) lost.set(e, how);
    return e;
  }

  /**
   * The replica drained and leaves: it answered every call it took here
   * before saying so, so the calls still waiting never ran — each goes to
   * another replica (as if never sent). No call is sent here again.
   */
  #drained(): void {
    if (this.dead) return;
    const e = new ServeError("unavailable", `replica ${this.info.id} of ${this.deployment} drained and left before it took the request; retry it`, { deployment: this.deployment });
    lost.set(e, "unsent");
    this.#onClose(e);
    this.#conn?.then((c) => c.close(), () => {});
  }

  #onClose(cause?: ServeError): void {
    if (this.dead) return;
    this.dead = true;
    // Calls are written as soon as the connection is open: before that, none has left this process
    // (a replica that exited before the link opened — drained, or gone — took none: another may).
    const err = cause ?? this.#deadError(this.#open ? "inflight" : "unsent");
    if (cause && !this.#open) lost.set(cause, "unsent");
    // A call that never reached the replica is sent again by its router (streams too): its stream has not begun, so it
    // is not failed here; if the router gives up, its caller fails it.
    const resent = lost.get(err) === "unsent";
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    // Out of its router first: a call failed here is settled at once, and one sent again must not find this replica.
    this.onDead(this);
    for (const p of pending) {
      if (!resent) p.sink?.fail(err);
      p.reject(err);
    }
  }

  /**
   * The replica left the routing table because it is draining: no new calls
   * come here, and the ones in flight still get their answers (a replica
   * answers them before it exits; if it dies instead, they fail with 503).
   */
  retire(): void {
    this.#retiring = true;
    if (this.#pending.size === 0) this.close();
  }

  close(): void {
    this.#conn?.then((c) => c.close(), () => {});
    this.#onClose();
  }
}

/** Compile-time check that every message type is handled; a newer peer's unknown type is ignored. */
export function exhaustive(_msg: never): void {}
