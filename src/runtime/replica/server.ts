import { ServeError } from "../../error.ts";
import { LazyAbort, lazyContext, withRequestContext, type RuntimeContext } from "../../api/request-context.ts";
import { isAsyncIterable, isStreamingResponse } from "../../api/http-result.ts";
import type { Callable } from "../../graph/instantiate.ts";
import type { Connection } from "../channel/connection.ts";
import { HTTP_METHOD, type DataMessage, type WireRequest, type WireResponse } from "../channel/messages.ts";
import { STREAM_WINDOW } from "../remote-invoker.ts";
import { WIRE_HANDLER, type WireHandler } from "../../api/dag-driver.ts";
import { toRequest } from "../../api/wire-request.ts";
import { KeptRef, roundTrip } from "../../wire/codec.ts";
import { exhaustive } from "../replica-client.ts";
import { loadedModelIds, modelIdOf, withModelId } from "../../api/multiplex.ts";
import { httpFailure, replicaStats } from "../metrics/replica-stats.ts";
import { startCallSpan } from "../tracing/call-span.ts";

/** How long a kept result waits for its fetch or release before it is dropped anyway. */
export const KEPT_TTL_MS = 60_000;
/** At most this many kept results per replica, whatever their size; beyond it the oldest is dropped. */
export const MAX_KEPT = 1024;

/** Where a replica keeps results of forwarded calls, and how to fetch another replica's. */
export interface KeepOptions {
  /** This replica's data socket: kept results are fetched from it. */
  socket: string;
  /** Fetches a result kept by another replica (the RemoteInvoker's fetchKept). */
  fetch(ref: KeptRef): Promise<unknown>;
  ttlMs?: number;
}

const kept = { now: 0, stored: 0, fetched: 0 };

/** Whether any top-level argument is a forwarded result (a plain loop: this runs per call). */
function hasKept(args: unknown[]): boolean {
  for (let i = 0; i < args.length; i++) if (args[i] instanceof KeptRef) return true;
  return false;
}

/** This process's kept results (for tests and diagnostics): held now, ever stored, fetches served. */
export function keptStats(): { now: number; stored: number; fetched: number } {
  return { ...kept };
}

interface Kept {
  value: unknown;
  timer: ReturnType<typeof setTimeout>;
}

interface Active {
  abort: LazyAbort;
  /** Stream credit: chunks the caller can still take, and who waits for more. */
  credit: number;
  wake?: () => void;
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v instanceof Promise || (typeof v === "object" && v !== null && typeof (v as { then?: unknown }).then === "function");
}

/** One call this replica admitted, until it is answered. */
class RunningCall {
  readonly t0 = performance.now();
  readonly active: Active = { abort: new LazyAbort(), credit: STREAM_WINDOW };
  /** Past the reconfigure gate: counted in `running`. */
  entered = false;
  /** The error code it ended with (for metrics and its span). */
  failed: string | undefined;
  /** Its request context, once it runs (a stream's chunks are made in it). */
  ctx: RuntimeContext | undefined;
  /** The multiplexed model id it runs with (a stream's chunks too). */
  modelId: string | undefined;

  constructor(
    readonly conn: Connection,
    readonly msg: Extract<DataMessage, { t: "call" }>,
    readonly span: ReturnType<typeof startCallSpan>,
  ) {}
}

/**
 * Serves one replica's calls. Enforces maxOngoingRequests (the excess gets
 * "busy" and is sent elsewhere by its caller), holds new calls while a
 * reconfigure runs, and drains before stopping.
 */
export class ReplicaServer {
  maxOngoing: number;
  /** Calls admitted (running or waiting for a reconfigure to finish). */
  admitted = 0;
  /** Calls past the gate, running user code. */
  running = 0;
  draining = false;
  #gate: Promise<void> | null = null;
  #idle: (() => void)[] = [];
  /** Told when an admitted call ends (a slot frees): the in-process ingress waits for one this way. */
  #freed: (() => void)[] = [];
  readonly #active = new Map<Connection, Map<number, Active>>();
  /** Results of forwarded calls, by token, until fetched and released (or their TTL passes). */
  readonly #kept = new Map<string, Kept>();
  /** Bound methods by name, with the function each was bound from: resolve() binds anew on every call. */
  readonly #methods = new Map<string | null, { raw: unknown; bound: (...a: unknown[]) => unknown }>();

  constructor(
    readonly callable: Callable,
    maxOngoing: number,
    readonly keep?: KeepOptions,
  ) {
    this.maxOngoing = maxOngoing;
  }

  /** How many results this replica keeps for forwarded calls. */
  get keptCount(): number {
    return this.#kept.size;
  }

  get name(): string {
    return this.callable.deployment.name;
  }

  handle(msg: DataMessage, conn: Connection): void {
    switch (msg.t) {
      case "call":
        if (this.draining || this.admitted >= this.maxOngoing) return conn.send({ t: "busy", id: msg.id });
        void this.#run(conn, msg);
        return;
      case "cancel": {
        const a = this.#active.get(conn)?.get(msg.id);
        a?.abort.abort(new ServeError("cancelled", "the caller cancelled the request"));
        return;
      }
      case "credit": {
        const a = this.#active.get(conn)?.get(msg.id);
        if (a) {
          a.credit += msg.n;
          a.wake?.();
        }
        return;
      }
      case "fetch": {
        const k = this.#kept.get(msg.k);
        if (!k) return conn.send({ t: "err", id: msg.id, e: this.#goneError().toJSON() });
        try {
          conn.send({ t: "ok", id: msg.id, v: k.value });
          kept.fetched++;
        } catch (e) {
          conn.send({ t: "err", id: msg.id, e: ServeError.fromUser(e, this.name).toJSON() });
        }
        return;
      }
      case "release":
        return this.#drop(msg.k);
      case "ok":
      case "err":
      case "busy":
      case "chunk":
      case "end":
      case "drained":
        return; // replica → caller only
      default:
        return exhaustive(msg);
    }
  }

  #goneError(): ServeError {
    return new ServeError("unavailable", `a forwarded result of ${this.name} is no longer kept (released, or not fetched within ${(this.keep?.ttlMs ?? KEPT_TTL_MS) / 1000} s); retry the request`, {
      deployment: this.name,
    });
  }

  /** Keeps a forwarded call's result and returns the reference the caller passes on. */
  #store(value: unknown): KeptRef {
    const token = crypto.randomUUID();
    const timer = setTimeout(() => this.#drop(token), this.keep?.ttlMs ?? KEPT_TTL_MS);
    timer.unref?.();
    this.#kept.set(token, { value, timer });
    kept.now++;
    kept.stored++;
    if (this.#kept.size > MAX_KEPT) this.#drop(this.#kept.keys().next().value!);
    return new KeptRef(this.keep!.socket, token, this.name);
  }

  #drop(token: string): void {
    const k = this.#kept.get(token);
    if (!k) return;
    clearTimeout(k.timer);
    this.#kept.delete(token);
    kept.now--;
  }

  /** Replaces each top-level KeptRef argument by its value: from this replica's own store, or fetched from its producer. */
  #fetchArgs(args: unknown[]): Promise<unknown[]> {
    return Promise.all(
      args.map((a) => {
        if (!(a instanceof KeptRef)) return a;
        if (a.socket === this.keep?.socket) {
          const k = this.#kept.get(a.token);
          if (!k) throw this.#goneError();
          return roundTrip(k.value); // a copy, as a fetch would give: the kept value may still be fetched by others
        }
        if (!this.keep) throw new ServeError("internal", `a forwarded result of ${a.deployment} arrived at a replica that cannot fetch it`, { deployment: this.name });
        return this.keep.fetch(a);
      }),
    );
  }

  /** A caller's socket closed: abort what it was waiting for. */
  dropConnection(conn: Connection): void {
    const calls = this.#active.get(conn);
    if (!calls) return;
    for (const a of calls.values()) a.abort.abort(new ServeError("cancelled", "the caller went away"));
    this.#active.delete(conn);
  }

  /**
   * Runs one admitted call and answers it. A call that needs no waiting of its own (no reconfigure
   * under way, no forwarded argument, no model id) runs at once and is answered when its value is
   * there, without an async frame: most calls of a request are like that.
   */
  #run(conn: Connection, msg: Extract<DataMessage, { t: "call" }>): void {
    this.admitted++;
    const c = new RunningCall(conn, msg, startCallSpan(this.name, msg));
    let calls = this.#active.get(conn);
    if (!calls) this.#active.set(conn, (calls = new Map()));
    calls.set(msg.id, c.active);
    // The model id comes with the call, or, at an ingress, in the HTTP request's headers (a bad one is the request's error).
    try {
      c.modelId = msg.x ?? (msg.m === HTTP_METHOD ? modelIdOf(msg.a[0] as WireRequest) : undefined);
    } catch (e) {
      this.#failed(c, e);
      return this.#end(c);
    }
    if (this.#gate || c.modelId || hasKept(msg.a)) {
      void this.#runWaiting(c);
      return;
    }
    c.entered = true;
    this.running++;
    const ctx = (c.ctx = lazyContext(msg.r, c.active.abort));
    if (c.span) ctx.traceparent = c.span.traceparent;
    let out: unknown;
    try {
      out = withRequestContext(ctx, ReplicaServer.#invokeCall, this, c);
    } catch (e) {
      this.#failed(c, e);
      return this.#end(c);
    }
    if (!isThenable(out)) return this.#complete(c, out);
    out.then(
      (v) => this.#complete(c, v),
      (e) => {
        this.#failed(c, e);
        this.#end(c);
      },
    );
  }

  /** Answers a call with its value: whole, or chunk by chunk when the caller takes a stream and the value is one. */
  #complete(c: RunningCall, out: unknown): void {
    const msg = c.msg;
    if (msg.s && (isAsyncIterable(out) || out instanceof Response)) {
      if (msg.m === HTTP_METHOD) c.failed = httpFailure(out);
      const sent = isAsyncIterable(out) ? this.#stream(c.conn, msg.id, out, c.active, c.ctx!, c.modelId) : this.#httpResponse(c.conn, msg.id, out as Response, c.active);
      sent.then(
        () => this.#end(c),
        (e) => {
          this.#failed(c, e);
          this.#end(c);
        },
      );
      return;
    }
    this.#answer(c, out);
    this.#end(c);
  }

  /** A call that waits before it runs: for a reconfigure, its forwarded arguments, or its model. */
  async #runWaiting(c: RunningCall): Promise<void> {
    const { msg, active, modelId } = c;
    let out: unknown;
    try {
      while (this.#gate) await this.#gate;
      c.entered = true;
      this.running++;
      const ctx = (c.ctx = lazyContext(msg.r, active.abort));
      if (c.span) ctx.traceparent = c.span.traceparent;
      const args = hasKept(msg.a) ? await this.#fetchArgs(msg.a) : msg.a;
      const run = () => withRequestContext(ctx, () => this.#invoke(msg.m, args, active.abort));
      out = await (modelId ? withModelId(modelId, run) : run());
    } catch (e) {
      this.#failed(c, e);
      return this.#end(c);
    }
    this.#complete(c, out);
  }

  /** Sends a call's value (or, kept here, its reference); a value the codec cannot carry is answered as an error. */
  #answer(c: RunningCall, out: unknown): void {
    const msg = c.msg;
    if (msg.m === HTTP_METHOD) c.failed = httpFailure(out);
    try {
      const v = msg.k && this.keep && !msg.s ? this.#store(out) : out;
      // After a call that named a model, tell the caller which models this replica holds.
      c.conn.send(msg.x ? { t: "ok", id: msg.id, v, mm: loadedModelIds() } : { t: "ok", id: msg.id, v });
    } catch (e) {
      this.#failed(c, e);
    }
  }

  #failed(c: RunningCall, e: unknown): void {
    const err = ServeError.fromUser(e, this.name);
    c.failed = err.code;
    c.conn.send({ t: "err", id: c.msg.id, e: err.toJSON() });
  }

  #end(c: RunningCall): void {
    replicaStats.done(c.t0, c.failed);
    c.span?.end(c.failed);
    this.#active.get(c.conn)?.delete(c.msg.id);
    this.admitted--;
    if (c.entered) this.running--;
    if (this.running === 0 && this.#idle.length) for (const f of this.#idle.splice(0)) f();
    if (this.#freed.length) for (const f of this.#freed.splice(0)) f();
  }

  /** #invoke for `c`, as a function of its own: the request context runs it with arguments, no closure per call. */
  static #invokeCall(server: ReplicaServer, c: RunningCall): unknown {
    return server.#invoke(c.msg.m, c.msg.a, c.active.abort);
  }

  #invoke(method: string | null, args: unknown[], abort: LazyAbort): unknown {
    if (method === HTTP_METHOD) {
      const w = args[0] as WireRequest;
      const wire = (this.callable.instance as Record<PropertyKey, unknown> | null)?.[WIRE_HANDLER];
      if (typeof wire === "function") return (wire as WireHandler).call(this.callable.instance, w);
      return this.callable.resolve("fetch")(toRequest(w, abort.signal));
    }
    return this.#method(method)(...args);
  }

  /** callable.resolve(method), bound once per method for as long as the instance holds the same function. */
  #method(method: string | null): (...a: unknown[]) => unknown {
    const inst = this.callable.instance;
    const raw = inst === null ? null : inst[method ?? "__call__"];
    const hit = this.#methods.get(method);
    if (hit !== undefined && hit.raw === raw) return hit.bound;
    const bound = this.callable.resolve(method);
    this.#methods.set(method, { raw, bound });
    return bound;
  }

  async #stream(conn: Connection, id: number, source: AsyncIterable<unknown>, a: Active, ctx: RuntimeContext, modelId?: string): Promise<void> {
    const cancel = a.abort;
    const it = source[Symbol.asyncIterator]();
    // Wake a producer waiting for credit too, or its call never ends and keeps its slot.
    const stop = () => {
      a.wake?.();
      void it.return?.();
    };
    const unlisten = cancel.onAbort(stop);
    try {
      for (;;) {
        if (cancel.aborted) return;
        // A generator's body runs in the context of whoever calls next(): give it the request's.
        const next = () => withRequestContext(ctx, () => it.next());
        const r = await (modelId ? withModelId(modelId, next) : next());
        if (r.done) break;
        while (a.credit <= 0 && !cancel.aborted) await new Promise<void>((w) => (a.wake = w));
        if (cancel.aborted) return;
        a.credit--;
        conn.send({ t: "chunk", id, v: r.value });
      }
      conn.send({ t: "end", id });
    } finally {
      unlisten();
    }
  }

  /** A Response to the proxy: whole in one message, or head + body chunks when it streams. */
  async #httpResponse(conn: Connection, id: number, res: Response, a: Active): Promise<void> {
    const head: WireResponse = { status: res.status, headers: headersAsPairs(res.headers), body: null };
    // A whole answer is read without touching `res.body`: reading it makes Bun build a ReadableStream
    // for the body, and the bytes then come through it (5-8 µs more a response, cold, measured).
    if (!isStreamingResponse(res) || !res.body) {
      let body: Uint8Array;
      // With its type in the headers already (Response.json does that), the bytes in one step: no Blob.
      if (res.headers.has("content-type")) body = await res.bytes();
      else {
        // A Response built from a string or a Blob carries its type in the body,
        // not yet in its headers (Bun adds it when it sends): keep it.
        const blob = await res.blob();
        body = new Uint8Array(await blob.arrayBuffer());
        if (blob.type) head.headers.push(["content-type", blob.type]);
      }
      // Empty is no body to the client; a status that must not have one (204, 304) must get none.
      head.body = body.byteLength === 0 && NULL_BODY_STATUSES.has(res.status) ? null : body;
      conn.send({ t: "ok", id, v: head });
      return;
    }
    head.streamed = true;
    conn.send({ t: "chunk", id, v: head });
    const bytes = (async function* () {
      const reader = res.body!.getReader();
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          yield value;
        }
      } finally {
        reader.releaseLock();
        await res.body!.cancel().catch(() => {});
      }
    })();
    await this.#stream(conn, id, bytes, a, lazyContext("", a.abort));
  }

  /** Resolves when the next admitted call ends. */
  whenFree(): Promise<void> {
    return new Promise((r) => this.#freed.push(r));
  }

  /** Runs `fn` when no call is running; calls arriving meanwhile wait for it. */
  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    while (this.#gate) await this.#gate;
    let release!: () => void;
    this.#gate = new Promise<void>((r) => (release = r));
    try {
      if (this.running > 0) await new Promise<void>((r) => this.#idle.push(r));
      return await fn();
    } finally {
      this.#gate = null;
      release();
    }
  }

  /**
   * Stops taking calls and waits (at most `timeoutS`) for those running.
   * Calls whose caller gave up (cancelled, timed out, went away) do not hold
   * the drain: nobody is waiting for their answer.
   */
  async drain(timeoutS: number): Promise<void> {
    this.draining = true;
    if (!this.#awaited()) return;
    await Promise.race([
      new Promise<void>((r) => {
        const check = () => (this.#awaited() ? setTimeout(check, 5) : r());
        check();
      }),
      Bun.sleep(timeoutS * 1000),
    ]);
  }

  /** Whether a call admitted on `conn` still runs for a caller waiting for it (a drain that timed out leaves some). */
  awaitedOn(conn: Connection): boolean {
    for (const a of this.#active.get(conn)?.values() ?? []) if (!a.abort.aborted) return true;
    return false;
  }

  /** Whether some admitted call still has a caller waiting for it, or a kept result still waits for its fetch. */
  #awaited(): boolean {
    if (this.#kept.size > 0) return true;
    for (const calls of this.#active.values()) for (const a of calls.values()) if (!a.abort.aborted) return true;
    return false;
  }
}

/** Statuses whose Response may not carry a body (the Fetch standard's null body statuses). */
const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);

/**
 * A Response's headers as pairs, set-cookie values apart, as its iterator gives them: by forEach,
 * which a replica that has just woken runs in 1.5 µs against 4.8 for the spread (median, cold).
 */
function headersAsPairs(headers: Headers): [string, string][] {
  const out: [string, string][] = [];
  headers.forEach((v, k) => void out.push([k, v]));
  return out;
}
