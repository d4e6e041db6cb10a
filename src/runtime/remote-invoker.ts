import { ServeError } from "../error.ts";
import type { CallOptions, Invoker } from "../api/invoker.ts";
import { currentRequestContext } from "../api/request-context.ts";
import type { BinaryChannel } from "./channel/connection.ts";
import type { RoutingTable } from "./channel/messages.ts";
import { ReplicaClient, type ChunkSink } from "./replica-client.ts";
import { Router } from "./router.ts";

/** Chunks a streamed call may send ahead of the consumer. */
export const STREAM_WINDOW = 16;

/**
 * Calls deployments of one application over their replicas' sockets. Fed by
 * the controller's routing snapshots; keeps one client per replica.
 */
export class RemoteInvoker implements Invoker {
  readonly #routers = new Map<string, Router>();
  readonly #clients = new Map<string, ReplicaClient>();
  version = -1;

  constructor(readonly binary: BinaryChannel = {}) {}

  router(deployment: string): Router {
    let r = this.#routers.get(deployment);
    if (!r) this.#routers.set(deployment, (r = new Router(deployment)));
    return r;
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
          c = new ReplicaClient(info, name, this.binary, (dead) => this.#routers.get(name)?.drop(dead));
          this.#clients.set(info.id, c);
        }
        return c;
      });
      this.router(name).update(route, clients);
    }
    for (const [id, c] of this.#clients) {
      if (!live.has(id)) {
        this.#clients.delete(id);
        c.retire();
      }
    }
  }

  #options(opts: CallOptions): { requestId: string; signal?: AbortSignal } {
    const ctx = currentRequestContext();
    let signal = opts.signal ?? ctx?.signal;
    if (opts.timeoutS !== undefined) {
      const t = AbortSignal.timeout(opts.timeoutS * 1000);
      signal = signal ? AbortSignal.any([signal, t]) : t;
    }
    return { requestId: opts.requestId ?? ctx?.requestId ?? crypto.randomUUID(), signal };
  }

  call(deployment: string, method: string | null, args: unknown[], opts: CallOptions = {}): Promise<unknown> {
    return this.router(deployment).call({ method, args, ...this.#options(opts) });
  }

  async *stream(deployment: string, method: string | null, args: unknown[], opts: CallOptions = {}): AsyncGenerator<unknown> {
    const chunks: unknown[] = [];
    let done = false;
    let failure: ServeError | null = null;
    let wake: (() => void) | null = null;
    const notify = () => (wake?.(), (wake = null));
    const sink: ChunkSink = {
      chunk: (v) => (chunks.push(v), notify()),
      end: () => ((done = true), notify()),
      fail: (e) => ((failure = e), notify()),
    };
    const o = this.#options(opts);
    const ctl = new AbortController();
    const signal = o.signal ? AbortSignal.any([o.signal, ctl.signal]) : ctl.signal;
    const router = this.router(deployment);
    let credit = (_n: number) => {};
    const onSent = (client: ReplicaClient, id: number) => (credit = (n) => client.credit(id, n));
    const call = router.call({ method, args, requestId: o.requestId, signal, sink, onSent });
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
      if (!done) ctl.abort(new ServeError("cancelled", `the consumer of ${deployment}'s stream stopped reading`));
    }
  }

  close(): void {
    for (const c of this.#clients.values()) c.close();
    this.#clients.clear();
  }
}

