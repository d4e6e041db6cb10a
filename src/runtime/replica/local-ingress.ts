import { ServeError } from "../../error.ts";
import type { CancelToken } from "../../api/request-context.ts";
import type { Connection } from "../channel/connection.ts";
import type { DataMessage } from "../channel/messages.ts";
import { settleAnswer, type PendingCall, type ReplicaClient, type Settle } from "../replica-client.ts";
import { CancellableCall, type RouteCall, type Router } from "../router.ts";
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
  /** What a stream's consumer asks for more chunks through, as if it were the replica's client. */
  readonly #credit = { credit: (id: number, n: number) => this.server.handle({ t: "credit", id, n }, this.#conn) } as unknown as ReplicaClient;

  constructor(readonly server: ReplicaServer) {}

  /** Calls taken at once here and by the siblings (a shadow's copies beyond it are dropped). */
  get capacity(): number {
    return this.server.maxOngoing + (this.siblings?.capacity ?? 0);
  }

  call(c: RouteCall): Promise<unknown> {
    const done = Promise.withResolvers<unknown>();
    this.next(new LocalCall(this, c, done));
    return done.promise;
  }

  /** As call(), with the end told to `done`. */
  start(c: RouteCall, done: Settle): void {
    this.next(new LocalCall(this, c, done));
  }

  /** Runs `a` here when this replica has room, else at a sibling, else when a call here ends. */
  next(a: LocalCall): void {
    const c = a.c;
    const s = this.server;
    if (c.cancel?.aborted) return a.settle(stopped(c.cancel, s.name));
    a.listen();
    if (!s.draining && s.admitted < s.maxOngoing) return this.#run(a);
    const siblings = this.siblings;
    if (siblings && siblings.replicas.length > 0) {
      // The siblings' router takes the token, and the call's end, from here on.
      a.unlisten();
      return siblings.start(c, a.done);
    }
    if (s.draining) return a.settle(new ServeError("unavailable", `${s.name} is shutting down and has no other replica yet; retry the request`, { deployment: s.name }));
    this.#slot(a);
  }

  #run(a: LocalCall): void {
    const c = a.c;
    const id = (a.id = this.#nextId++);
    this.#pending.set(id, a);
    c.sink?.sent?.(this.#credit, id);
    const call: Extract<DataMessage, { t: "call" }> = { t: "call", id, m: c.method, a: c.args, r: c.requestId };
    if (c.sink) call.s = true;
    this.server.handle(call, this.#conn);
  }

  /** The caller's token aborted: the call stops running here, or stops waiting for a slot. */
  cancelled(a: LocalCall): void {
    const reason = stopped(a.c.cancel!, this.server.name);
    if (a.id !== 0 && this.#pending.delete(a.id)) {
      this.server.handle({ t: "cancel", id: a.id }, this.#conn);
      a.id = 0;
      return a.settle(reason);
    }
    if (a.waiting) {
      a.waiting = false;
      this.#waiting--;
      a.settle(reason);
    }
  }

  /** Waits for a call of this replica to end; beyond maxQueuedRequests waiting, 503 at once. */
  #slot(a: LocalCall): void {
    const max = this.siblings?.maxQueued ?? -1;
    const name = this.server.name;
    if (max >= 0 && this.#waiting >= max) {
      return a.settle(new ServeError("unavailable", `${name} is at capacity and its queue is full (maxQueuedRequests ${max}); retry later or add replicas`, { deployment: name }));
    }
    this.#waiting++;
    a.waiting = true;
    void this.server.whenFree().then(() => {
      if (!a.waiting) return; // cancelled meanwhile
      a.waiting = false;
      this.#waiting--;
      this.next(a);
    });
  }
}

/** One request to the in-process ingress, from call() to its answer: the entry the replica server's answer settles. */
class LocalCall extends CancellableCall implements PendingCall {
  /** The id it runs under here (0: not running here). */
  id = 0;
  waiting = false;

  constructor(
    readonly ingress: LocalIngress,
    c: RouteCall,
    done: Settle,
  ) {
    super(c, done);
  }

  ok(value: unknown): void {
    this.id = 0;
    this.settle(undefined, value);
  }

  /** It began to drain or filled up in between: look again. */
  busy(): void {
    this.id = 0;
    this.ingress.next(this);
  }

  reject(e: ServeError): void {
    this.id = 0;
    this.settle(e);
  }

  cancelled(): void {
    this.ingress.cancelled(this);
  }
}

function stopped(cancel: CancelToken, deployment: string): ServeError {
  return cancel.reason instanceof ServeError ? cancel.reason : new ServeError("cancelled", `the request was cancelled while waiting for ${deployment}`, { deployment });
}
