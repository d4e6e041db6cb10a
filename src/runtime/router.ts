import { ServeError } from "../error.ts";
import type { CancelToken } from "../api/request-context.ts";
import type { DeploymentRoute } from "./channel/messages.ts";
import { OUTLIER_DEFAULTS } from "../config/schema.ts";
import { countsAgainstReplica, OutlierDetector } from "./outlier.ts";
import { lostCall, type CallExtra, type ChunkSink, type OutgoingCall, type PendingCall, type ReplicaClient, type Settle } from "./replica-client.ts";

/** A call, as the Router and the in-process ingress take it. */
export interface RouteCall extends OutgoingCall {
  cancel?: CancelToken;
  /** The request's multiplexed model id: a replica that has it loaded is preferred. */
  modelId?: string;
  /** The caller's W3C traceparent (tracing on only); the time spent queued here travels with it. */
  traceparent?: string;
  /**
   * Times a call whose replica died while running it is sent again to another
   * replica (the caller said it is idempotent: `handle.options({ maxRetries })`).
   * A call that never left this process is always sent again.
   */
  retries?: number;
}

/**
 * A call's own state object from its start to its end (a Router's, the
 * in-process ingress's): it listens to the caller's cancel token itself (the
 * token tells it `cancelled`, no closure per call) until it settles `done`.
 */
export abstract class CancellableCall {
  listening = false;
  readonly sink: ChunkSink | undefined;

  constructor(
    readonly c: RouteCall,
    readonly done: Settle,
  ) {
    this.sink = c.sink;
  }

  /** The caller's token aborted. */
  abstract cancelled(reason: unknown): void;

  /** Listens to the caller's token, if it has one, until unlisten() or settle(). */
  listen(): void {
    if (this.listening || !this.c.cancel) return;
    this.listening = true;
    this.c.cancel.addListener(this);
  }

  unlisten(): void {
    if (!this.listening) return;
    this.listening = false;
    this.c.cancel!.removeListener(this);
  }

  /** The call's end: its error, or its value. */
  settle(error: unknown, value?: unknown): void {
    this.unlisten();
    if (error !== undefined) this.done.reject(error);
    else this.done.resolve(value);
  }
}

/**
 * One call on its way through a Router, from call() to its answer: the entry
 * its replica's answer settles (PendingCall), its place in the queue and what
 * it carries between attempts.
 */
class RoutedCall extends CancellableCall implements PendingCall {
  woken = false;
  queued = false;
  retries: number;
  readonly queuedAt: number;
  /** The replica the call is on, between its send and its answer. */
  replica: ReplicaClient | null = null;
  id = 0;

  constructor(
    readonly router: Router,
    c: RouteCall,
    done: Settle,
  ) {
    super(c, done);
    this.retries = c.retries ?? 0;
    this.queuedAt = c.traceparent ? performance.now() : 0;
  }

  ok(value: unknown): void {
    this.router.answered(this, value, false);
  }

  busy(): void {
    this.router.answered(this, undefined, true);
  }

  reject(e: ServeError): void {
    this.router.failed(this, e);
  }

  cancelled(reason: unknown): void {
    this.router.cancelled(this, reason);
  }
}

/** How long a replica that answered "busy" is skipped, in ms. */
const BUSY_BACKOFF_MS = 2;

/**
 * Sends one deployment's calls to its replicas: power of two choices on the
 * in-flight counts this caller sees, at most maxOngoingRequests each; the rest
 * wait in this caller's queue, and beyond maxQueuedRequests fail with 503.
 * Fed by versioned snapshots of the replica set; never asks the controller.
 */
export class Router {
  replicas: ReplicaClient[] = [];
  maxOngoing = 5;
  maxQueued = -1;
  readonly #queue: RoutedCall[] = [];
  /** Waiters woken and not yet back in call(): their slot is spoken for. */
  #handoffs = 0;
  #timer: ReturnType<typeof setTimeout> | null = null;
  /** Calls woken this turn, resumed by one microtask (#resume). */
  #woken: RoutedCall[] = [];
  readonly #outliers: OutlierDetector;

  constructor(readonly deployment: string) {
    this.#outliers = new OutlierDetector(deployment, () => this.#wakeAll());
  }

  update(route: DeploymentRoute, replicas: ReplicaClient[]): void {
    this.replicas = replicas;
    this.maxOngoing = route.maxOngoingRequests;
    this.maxQueued = route.maxQueuedRequests;
    this.#outliers.policy = route.outlierDetection ?? OUTLIER_DEFAULTS;
    this.#wakeAll();
  }

  /** Removes a replica whose socket closed; its queued calls go elsewhere. */
  drop(client: ReplicaClient): void {
    this.replicas = this.replicas.filter((r) => r !== client);
    this.#wakeAll();
  }

  #pick(now: number, modelId?: string): ReplicaClient | undefined {
    // Ejected replicas are left out, unless no other is left to take calls.
    const rs = this.#outliers.ejectedNow > 0 && this.replicas.some((r) => !r.ejected && !r.dead) ? this.replicas.filter((r) => !r.ejected) : this.replicas;
    const n = rs.length;
    if (n === 0) return undefined;
    // A method, not a closure: #pick runs for every call, and a closure (with its scope) per call was garbage.
    if (modelId !== undefined && n > 1) return this.#pickForModel(rs, now, modelId);
    if (n === 1) return this.#ok(rs[0]!, now) ? rs[0] : undefined;
    const i = Math.floor(Math.random() * n);
    let j = Math.floor(Math.random() * (n - 1));
    if (j >= i) j++;
    const a = rs[i]!;
    const b = rs[j]!;
    const okA = this.#ok(a, now);
    const okB = this.#ok(b, now);
    if (okA && (!okB || a.inflight <= b.inflight)) return a;
    if (okB) return b;
    for (const r of rs) if (this.#ok(r, now)) return r;
    return undefined;
  }

  /** Apart from #pick, so that the closure it makes is made only for a call that names a model. */
  #pickForModel(rs: ReplicaClient[], now: number, modelId: string): ReplicaClient | undefined {
    return pickForModel(rs.filter((r) => this.#ok(r, now)), modelId);
  }

  /** Whether `r` takes a call now: alive, below maxOngoingRequests, not backing off after "busy". */
  #ok(r: ReplicaClient, now: number): boolean {
    return !r.dead && r.inflight < this.maxOngoing && r.busyUntil <= now;
  }

  /**
   * Sends the call to a replica with room, or queues it until one has room.
   * One promise and one RoutedCall per call, whatever happens to it: a busy
   * answer, a replica lost on the way or a cancellation moves the same object
   * on (a promise per attempt, and one per race with the cancel token, were a
   * large share of a hop's garbage).
   */
  call(c: RouteCall): Promise<unknown> {
    const done = Promise.withResolvers<unknown>();
    this.#next(new RoutedCall(this, c, done));
    return done.promise;
  }

  /** As call(), with the end told to `done` instead of a promise (the proxy's own request object takes it). */
  start(c: RouteCall, done: Settle): void {
    this.#next(new RoutedCall(this, c, done));
  }

  /** Sends `a` to a replica, or queues it; its answer comes back through answered()/failed(). */
  #next(a: RoutedCall): void {
    const c = a.c;
    if (c.cancel?.aborted) return a.settle(abortError(c.cancel.reason, this.deployment));
    a.listen();
    // First come, first served: while calls wait, a new one queues behind them
    // instead of taking the slot a woken waiter is about to use.
    const r = a.woken || (this.#queue.length === 0 && this.#handoffs === 0) ? this.#pick(Date.now(), c.modelId) : undefined;
    if (!r) return this.#wait(a);
    r.inflight++;
    a.replica = r;
    const extra: CallExtra | undefined =
      c.modelId || c.traceparent ? { ...(c.modelId && { x: c.modelId }), ...(c.traceparent && { tp: c.traceparent, q: performance.now() - a.queuedAt }) } : undefined;
    try {
      a.id = r.send(a, c, extra);
    } catch (e) {
      return this.failed(a, e as ServeError); // an argument the codec cannot carry: nothing was sent
    }
    c.sink?.sent?.(r, a.id);
  }

  /** The replica answered `a` (RoutedCall's PendingCall side): with a value, or busy (try another). */
  answered(a: RoutedCall, value: unknown, busy: boolean): void {
    const r = this.#release(a);
    if (!r) return;
    if (!busy) {
      this.#outliers.succeeded(r);
      return a.settle(undefined, value);
    }
    r.busyUntil = Date.now() + BUSY_BACKOFF_MS;
    a.woken = true; // a retry keeps its place ahead of the queue
    this.#next(a);
  }

  /** `a` failed on its replica: the replica's error, a lost connection, or this caller's cancellation. */
  failed(a: RoutedCall, e: ServeError): void {
    const r = this.#release(a);
    if (!r) return;
    const c = a.c;
    if (countsAgainstReplica(e, this.deployment, c.cancel?.aborted === true)) this.#outliers.failed(r, this.replicas);
    const lost = lostCall(e);
    // Sent again elsewhere: a call that never left (while another replica is left to take it), or
    // one the caller called idempotent, whose replica died before any chunk of it came back.
    if ((lost === "unsent" && this.replicas.length > 0) || (lost === "inflight" && a.retries > 0 && !c.sink)) {
      if (lost === "inflight") a.retries--;
      a.woken = true;
      return this.#next(a);
    }
    a.settle(e);
  }

  /** The caller cancelled `a` (its token aborted): out of the queue, or its replica told to stop. */
  cancelled(a: RoutedCall, reason: unknown): void {
    const e = abortError(reason, this.deployment);
    if (a.queued) {
      const i = this.#queue.indexOf(a);
      if (i >= 0) this.#queue.splice(i, 1);
      a.queued = false;
      return a.settle(e);
    }
    const r = a.replica;
    if (!r) return; // woken and not yet resumed: the resume sees the abort
    r.cancel(a.id);
    this.failed(a, e);
  }

  /** Ends `a`'s time on its replica; null when it was not on one (already answered or cancelled). */
  #release(a: RoutedCall): ReplicaClient | null {
    const r = a.replica;
    if (!r) return null;
    a.replica = null;
    r.inflight--;
    this.#wakeOne();
    return r;
  }

  /** Queues `a` for a slot; a woken call that found none (`a.woken`) goes back to the head of the queue. */
  #wait(a: RoutedCall): void {
    if (!a.woken && this.maxQueued >= 0 && this.#queue.length >= this.maxQueued) {
      return a.settle(
        new ServeError("unavailable", `${this.deployment} is at capacity and its queue is full (maxQueuedRequests ${this.maxQueued}); retry later or add replicas`, {
          deployment: this.deployment,
        }),
      );
    }
    a.queued = true;
    if (a.woken) this.#queue.unshift(a);
    else this.#queue.push(a);
    this.#armTimer();
  }

  /**
   * A queued call was woken: its slot is spoken for until it runs, a turn of the microtask queue later.
   * Calls woken in one turn resume together, in order, from one microtask (no closure per woken call).
   */
  private woke(a: RoutedCall): void {
    this.#handoffs++;
    a.queued = false;
    if (this.#woken.push(a) === 1) queueMicrotask(this.#resume);
  }

  readonly #resume = (): void => {
    const woken = this.#woken;
    this.#woken = []; // a call woken while these resume waits for the next microtask
    for (const a of woken) {
      this.#handoffs--;
      a.woken = true;
      this.#next(a);
    }
  };

  /** Replicas that said "busy" free up without telling this caller: look again soon. */
  #armTimer(): void {
    if (this.#timer || this.#queue.length === 0) return;
    const now = Date.now();
    if (!this.replicas.some((r) => r.busyUntil > now)) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#wakeAll();
    }, BUSY_BACKOFF_MS + 1);
  }

  #wakeOne(): void {
    const a = this.#queue.shift();
    if (a) this.woke(a);
  }

  #wakeAll(): void {
    const q = this.#queue.splice(0);
    for (const a of q) this.woke(a);
  }

  get queued(): number {
    return this.#queue.length;
  }

  /** Calls its replicas take at once. */
  get capacity(): number {
    return this.replicas.length * this.maxOngoing;
  }
}

/**
 * Among replicas with room: the least loaded of those that have the model;
 * else the one with the fewest models loaded (it evicts least), ties by load.
 */
function pickForModel(free: ReplicaClient[], modelId: string): ReplicaClient | undefined {
  let best: ReplicaClient | undefined;
  let bestKey = Infinity;
  for (const r of free) {
    const key = (r.models.has(modelId) ? 0 : 1 + r.models.size) * 1e6 + r.inflight;
    if (key < bestKey) [best, bestKey] = [r, key];
  }
  return best;
}

function abortError(reason: unknown, deployment: string): ServeError {
  if (reason instanceof ServeError) return reason;
  // A handle's timeoutS aborts with a TimeoutError: a 504, not a cancellation.
  if ((reason as Error | undefined)?.name === "TimeoutError") {
    return new ServeError("timeout", `the call to ${deployment} took longer than its handle's timeoutS; raise timeoutS in handle.options() or make ${deployment} faster`, { deployment });
  }
  return new ServeError("cancelled", `the request was cancelled while waiting for ${deployment}`, { deployment });
}
