import { ServeError } from "../../error.ts";
import { LazyAbort, lazyContext, withRequestContext, type RuntimeContext } from "../../api/request-context.ts";
import { isAsyncIterable, isStreamingResponse } from "../../api/http-result.ts";
import type { Callable } from "../../graph/instantiate.ts";
import type { Connection } from "../channel/connection.ts";
import { HTTP_METHOD, type DataMessage, type WireRequest, type WireResponse } from "../channel/messages.ts";
import { STREAM_WINDOW } from "../remote-invoker.ts";
import { WIRE_HANDLER, type WireHandler } from "../../api/dag-driver.ts";
import { toRequest } from "../../api/wire-request.ts";

interface Active {
  abort: LazyAbort;
  /** Stream credit: chunks the caller can still take, and who waits for more. */
  credit: number;
  wake?: () => void;
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
  readonly #active = new Map<Connection, Map<number, Active>>();

  constructor(
    readonly callable: Callable,
    maxOngoing: number,
  ) {
    this.maxOngoing = maxOngoing;
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
      default:
        return;
    }
  }

  /** A caller's socket closed: abort what it was waiting for. */
  dropConnection(conn: Connection): void {
    const calls = this.#active.get(conn);
    if (!calls) return;
    for (const a of calls.values()) a.abort.abort(new ServeError("cancelled", "the caller went away"));
    this.#active.delete(conn);
  }

  async #run(conn: Connection, msg: Extract<DataMessage, { t: "call" }>): Promise<void> {
    this.admitted++;
    const active: Active = { abort: new LazyAbort(), credit: STREAM_WINDOW };
    let calls = this.#active.get(conn);
    if (!calls) this.#active.set(conn, (calls = new Map()));
    calls.set(msg.id, active);
    let entered = false;
    try {
      while (this.#gate) await this.#gate;
      entered = true;
      this.running++;
      const ctx = lazyContext(msg.r, active.abort);
      const out = await withRequestContext(ctx, () => this.#invoke(msg.m, msg.a, active.abort));
      if (msg.s && isAsyncIterable(out)) await this.#stream(conn, msg.id, out, active, ctx);
      else if (msg.s && out instanceof Response) await this.#httpResponse(conn, msg.id, out, active);
      else conn.send({ t: "ok", id: msg.id, v: out });
    } catch (e) {
      conn.send({ t: "err", id: msg.id, e: ServeError.fromUser(e, this.name).toJSON() });
    } finally {
      calls.delete(msg.id);
      this.admitted--;
      if (entered) this.running--;
      if (this.running === 0) for (const f of this.#idle.splice(0)) f();
    }
  }

  #invoke(method: string | null, args: unknown[], abort: LazyAbort): unknown {
    if (method === HTTP_METHOD) {
      const w = args[0] as WireRequest;
      const wire = (this.callable.instance as Record<PropertyKey, unknown> | null)?.[WIRE_HANDLER];
      if (typeof wire === "function") return (wire as WireHandler).call(this.callable.instance, w);
      return this.callable.resolve("fetch")(toRequest(w, abort.signal));
    }
    return this.callable.resolve(method)(...args);
  }

  async #stream(conn: Connection, id: number, source: AsyncIterable<unknown>, a: Active, ctx: RuntimeContext): Promise<void> {
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
        const r = await withRequestContext(ctx, () => it.next());
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
    const head: WireResponse = { status: res.status, headers: [...res.headers], body: null };
    if (!res.body || !isStreamingResponse(res)) {
      if (res.body) {
        // A Response built from a string or a Blob carries its type in the body,
        // not yet in its headers (Bun adds it when it sends): keep it.
        const blob = await res.blob();
        head.body = new Uint8Array(await blob.arrayBuffer());
        if (blob.type && !res.headers.has("content-type")) head.headers.push(["content-type", blob.type]);
      }
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

  /** Whether some admitted call still has a caller waiting for it. */
  #awaited(): boolean {
    for (const calls of this.#active.values()) for (const a of calls.values()) if (!a.abort.aborted) return true;
    return false;
  }
}
