import { ServeError } from "../../error.ts";
import type { CancelToken } from "../../api/request-context.ts";
import type { Connection } from "../channel/connection.ts";
import type { DataMessage } from "../channel/messages.ts";
import { settleAnswer, type PendingCall, type Reply, type ReplicaClient } from "../replica-client.ts";
import type { RouteCall, Router } from "../router.ts";
import type { ReplicaServer } from "./server.ts";

/**
 * This replica's own ingress as its data-plane listener calls it: a request
 * for this application runs in this process through the same ReplicaServer
 * dispatch a call over a socket takes (admission, metrics, streaming credit,
 * cancellation, drain), with no socket and no copy in between. When this
 * replica is at maxOngoingRequests or draining, the request goes to a sibling
 * ingress replica through `siblings`; with no sibling it waits here for a
 * slot (beyond maxQueuedRequests: 503 at once).
 */
export class LocalIngress {
  /** The application's other ingress replicas (this one left out), kept current by each routing snapshot. */
  siblings: Router | null = null;
  #nextId = 1;
  #waiting = 0;
  readonly #pending = new Map<number, PendingCall>();
  /** Stands where a caller's socket would: the replica server answers through it. */
  readonly #conn = { send: (msg: DataMessage) => settleAnswer(this.#pending, msg), close() {} } as unknown as Connection;

  constructor(readonly server: ReplicaServer) {}

  /** Calls taken at once here and by the siblings (a shadow's copies beyond it are dropped). */
  get capacity(): number {
    return this.server.maxOngoing + (this.siblings?.capacity ?? 0);
  }

  async call(c: RouteCall): Promise<unknown> {
    const s = this.server;
    for (;;) {
      if (c.cancel?.aborted) throw stopped(c.cancel, s.name);
      if (!s.draining && s.admitted < s.maxOngoing) {
        const r = await this.#run(c);
        if (!r.busy) return r.value;
        continue; // it began to drain or filled up in between: look again
      }
      const siblings = this.siblings;
      if (siblings && siblings.replicas.length > 0) return siblings.call(c);
      if (s.draining) throw new ServeError("unavailable", `${s.name} is shutting down and has no other replica yet; retry the request`, { deployment: s.name });
      await this.#slot(c.cancel);
    }
  }

  #run(c: RouteCall): Promise<Reply> {
    const id = this.#nextId++;
    return new Promise<Reply>((resolve, reject) => {
      let unlisten = () => {};
      const done = { resolve: (r: Reply) => (unlisten(), resolve(r)), reject: (e: ServeError) => (unlisten(), reject(e)), sink: c.sink };
      this.#pending.set(id, done);
      if (c.cancel) {
        unlisten = c.cancel.onAbort(() => {
          if (!this.#pending.delete(id)) return;
          this.server.handle({ t: "cancel", id }, this.#conn);
          done.reject(stopped(c.cancel!, this.server.name));
        });
      }
      // A stream's consumer asks for more chunks through what it thinks is the replica's client.
      c.onSent?.({ credit: (_id: number, n: number) => this.server.handle({ t: "credit", id, n }, this.#conn) } as unknown as ReplicaClient, id);
      const call: Extract<DataMessage, { t: "call" }> = { t: "call", id, m: c.method, a: c.args, r: c.requestId };
      if (c.sink) call.s = true;
      this.server.handle(call, this.#conn);
    });
  }

  /** Waits for a call of this replica to end; beyond maxQueuedRequests waiting, 503 at once. */
  async #slot(cancel: CancelToken | undefined): Promise<void> {
    const max = this.siblings?.maxQueued ?? -1;
    const name = this.server.name;
    if (max >= 0 && this.#waiting >= max) {
      throw new ServeError("unavailable", `${name} is at capacity and its queue is full (maxQueuedRequests ${max}); retry later or add replicas`, { deployment: name });
    }
    this.#waiting++;
    try {
      await new Promise<void>((resolve, reject) => {
        const unlisten = cancel?.onAbort(() => reject(stopped(cancel, name))) ?? (() => {});
        void this.server.whenFree().then(() => (unlisten(), resolve()));
      });
    } finally {
      this.#waiting--;
    }
  }
}

function stopped(cancel: CancelToken, deployment: string): ServeError {
  return cancel.reason instanceof ServeError ? cancel.reason : new ServeError("cancelled", `the request was cancelled while waiting for ${deployment}`, { deployment });
}
