import { ServeError } from "../error.ts";
import type { CallOptions, Invoker } from "../api/invoker.ts";
import { LazyAbort, currentRequestContext, signalToken, type CancelToken } from "../api/request-context.ts";
import type { BinaryChannel } from "./channel/connection.ts";
import type { LinkOptions } from "./channel/transport.ts";
import type { RoutingTable } from "./channel/messages.ts";
import type { KeptRef } from "../wire/codec.ts";
import { ReplicaClient, type ChunkSink } from "./replica-client.ts";
import { currentModelId } from "../api/multiplex.ts";
import { Router, type RouteCall } from "./router.ts";

/** Chunks a streamed call may send ahead of the consumer. */
export const STREAM_WINDOW = 16;

/**
 * Calls deployments of one application over their replicas' sockets. Fed by
 * the controller's routing snapshots; keeps one client per replica.
 */
let callCounter = 0;
const callPrefix = `${process.pid.toString(36)}-c`;

/** An id for a call made outside any request (e.g. from a constructor). */
function nextCallId(): string {
  return callPrefix + (++callCounter).toString(36);
}

/** How long a caller still reads from a replica named gone (its link went silent) before failing what waits on it. */
const GONE_GRACE_MS = 250;

export class RemoteInvoker implements Invoker {
  readonly #routers = new Map<string, Router>();
  readonly #clients = new Map<string, ReplicaClient>();
  /** Clients that left the table with calls still waiting on them, until those are answered (or the replica is named gone). */
  readonly #retired = new Map<string, ReplicaClient>();
  /** Clients for fetching kept results, one per producer socket. */
  readonly #producers = new Map<string, ReplicaClient>();
  version = -1;

  /** @param links what TCP links need (the cluster token); unix-socket peers need nothing. */
  constructor(
    readonly binary: BinaryChannel = {},
    readonly links: LinkOptions = {},
  ) {}

  router(deployment: string): Router {
    let r = this.#routers.get(deployment);
    if (!r) this.#routers.set(deployment, (r = new Router(deployment)));
    return r;
  }

  /** Calls waiting in this process's queues, by the deployment they wait for (deployments with none left out). */
  queued(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [name, r] of this.#routers) if (r.queued > 0) out[name] = r.queued;
    return out;
  }

  /** Applies a newer snapshot; clients of replicas no longer listed close once their calls in flight have answered. */
  update(table: RoutingTable): void {
    if (table.version <= this.version) return;
    this.version = table.version;
    const live = new Set<string>();
    for (const [name, route] of Object.entries(table.deployments)) {
      const clients = route.replicas.map((info) => {
        live.add(info.id);
        let c = this.#clients.get(info.id);
        if (!c || c.dead) {
          c = new ReplicaClient(info, name, this.binary, (dead) => this.#routers.get(name)?.drop(dead), this.links);
          this.#clients.set(info.id, c);
        }
        return c;
      });
      this.router(name).update(route, clients);
    }
    const gone = table.gone ? new Set(table.gone) : null;
    for (const [id, c] of this.#clients) {
      if (!live.has(id)) {
        this.#clients.delete(id);
        c.retire();
        if (!c.dead) this.#retired.set(id, c);
      }
    }
    for (const [id, c] of this.#retired) {
      if (c.dead) this.#retired.delete(id);
      else if (gone?.has(id)) {
        // A replica whose link went silent (a node cut off) answers nothing more: what still waits on it fails (503) instead of
        // waiting on a link that may never close. After a grace, so answers already in the socket are read.
        this.#retired.delete(id);
        setTimeout(() => c.close(), GONE_GRACE_MS).unref();
      }
    }
  }

  /** The call as the router takes it, with what the options and the current request context say; built field by field (no spreads on the hot path). */
  #routeCall(method: string | null, args: unknown[], opts: CallOptions): RouteCall {
    const ctx = currentRequestContext();
    const modelId = opts.multiplexedModelId ?? currentModelId();
    const c: RouteCall = {
      method,
      args,
      requestId: opts.requestId ?? ctx?.requestId ?? nextCallId(),
      cancel: opts.cancel ?? ctx?.cancel ?? (ctx ? signalToken(ctx.signal) : undefined),
    };
    if (modelId) c.modelId = modelId;
    if (ctx?.traceparent) c.traceparent = ctx.traceparent;
    if (opts.maxRetries) c.retries = opts.maxRetries;
    return c;
  }

  call(deployment: string, method: string | null, args: unknown[], opts: CallOptions = {}, keep = false): Promise<unknown> {
    const c = this.#routeCall(method, args, opts);
    if (keep) c.keep = true;
    if (opts.timeoutS === undefined) return this.router(deployment).call(c);
    const cancel = (c.cancel = LazyAbort.child(c.cancel));
    const timer = setTimeout(() => cancel.abort(new DOMException(`timed out after ${opts.timeoutS} s`, "TimeoutError")), opts.timeoutS * 1000);
    return this.router(deployment)
      .call(c)
      .finally(() => clearTimeout(timer));
  }

  callKept(deployment: string, method: string | null, args: unknown[], opts: CallOptions = {}): Promise<KeptRef> {
    return this.call(deployment, method, args, opts, true) as Promise<KeptRef>;
  }

  #producer(ref: KeptRef): ReplicaClient {
    let c = this.#producers.get(ref.socket);
    if (!c || c.dead) {
      c = new ReplicaClient({ id: ref.socket, socket: ref.socket }, ref.deployment, this.binary, (dead) => {
        if (this.#producers.get(ref.socket) === dead) this.#producers.delete(ref.socket);
      }, this.links);
      this.#producers.set(ref.socket, c);
    }
    return c;
  }

  fetchKept(ref: KeptRef): Promise<unknown> {
    return this.#producer(ref).fetch(ref.token);
  }

  releaseKept(ref: KeptRef): void {
    this.#producer(ref).release(ref.token);
  }

  async *stream(deployment: string, method: string | null, args: unknown[], opts: CallOptions = {}): AsyncGenerator<unknown> {
    const chunks: unknown[] = [];
    let done = false;
    let failure: ServeError | null = null;
    let wake: (() => void) | null = null;
    const notify = () => (wake?.(), (wake = null));
    let credit = (_n: number) => {};
    const sink: ChunkSink = {
      chunk: (v) => (chunks.push(v), notify()),
      end: () => ((done = true), notify()),
      fail: (e) => ((failure = e), notify()),
      sent: (client, id) => (credit = (n) => client.credit(id, n)),
    };
    const o = this.#routeCall(method, args, opts);
    const ctl = LazyAbort.child(o.cancel);
    const timer = opts.timeoutS === undefined ? null : setTimeout(() => ctl.abort(new DOMException(`timed out after ${opts.timeoutS} s`, "TimeoutError")), opts.timeoutS * 1000);
    const router = this.router(deployment);
    const call = router.call({ method, args, requestId: o.requestId, cancel: ctl, sink, modelId: o.modelId, traceparent: o.traceparent });
    call.catch((e) => ((failure ??= e), notify()));
    let consumed = 0;
    try {
      for (;;) {
        if (chunks.length) {
          yield chunks.shift();
          if (++consumed % (STREAM_WINDOW / 2) === 0) credit(STREAM_WINDOW / 2);
          continue;
        }
        if (failure) throw failure;
        if (done) return;
        await new Promise<void>((r) => (wake = r));
      }
    } finally {
      if (timer) clearTimeout(timer);
      if (!done) ctl.abort(new ServeError("cancelled", `the consumer of ${deployment}'s stream stopped reading`));
    }
  }

  close(): void {
    for (const c of this.#clients.values()) c.close();
    this.#clients.clear();
    for (const c of this.#producers.values()) c.close();
    this.#producers.clear();
  }
}

