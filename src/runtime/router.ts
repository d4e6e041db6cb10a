import { ServeError } from "../error.ts";
import type { CancelToken } from "../api/request-context.ts";
import type { DeploymentRoute } from "./channel/messages.ts";
import { OUTLIER_DEFAULTS } from "../config/schema.ts";
import { countsAgainstReplica, OutlierDetector } from "./outlier.ts";
import { lostCall, type CallExtra, type ChunkSink, type ReplicaClient } from "./replica-client.ts";

interface Waiter {
  wake(): void;
}

export interface RouteCall {
  method: string | null;
  args: unknown[];
  requestId: string;
  cancel?: CancelToken;
  sink?: ChunkSink;
  /** Keep the result in the replica and answer a KeptRef (a forwarded response). */
  keep?: boolean;
  /** The request's multiplexed model id: a replica that has it loaded is preferred. */
  modelId?: string;
  /** Told which replica and call id took the call (streams send credit there). */
  onSent?: (client: ReplicaClient, id: number) => void;
  /** The caller's W3C traceparent (tracing on only); the time spent queued here travels with it. */
  traceparent?: string;
  /**
   * Times a call whose replica died while running it is sent again to another
   * replica (the caller said it is idempotent: `handle.options({ maxRetries })`).
   * A call that never left this process is always sent again.
   */
  retries?: number;
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
  readonly #queue: Waiter[] = [];
  /** Waiters woken and not yet back in call(): their slot is spoken for. */
  #handoffs = 0;
  #timer: ReturnType<typeof setTimeout> | null = null;
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
    const ok = (r: ReplicaClient) => !r.dead && r.inflight < this.maxOngoing && r.busyUntil <= now;
    if (modelId !== undefined && n > 1) return pickForModel(rs.filter(ok), modelId);
    if (n === 1) return ok(rs[0]!) ? rs[0] : undefined;
    const i = Math.floor(Math.random() * n);
    let j = Math.floor(Math.random() * (n - 1));
    if (j >= i) j++;
    const a = rs[i]!;
    const b = rs[j]!;
    if (ok(a) && (!ok(b) || a.inflight <= b.inflight)) return a;
    if (ok(b)) return b;
    return rs.find(ok);
  }

  async call(c: RouteCall): Promise<unknown> {
    let woken = false;
    let retries = c.retries ?? 0;
    const queuedAt = c.traceparent ? performance.now() : 0;
    for (;;) {
      if (c.cancel?.aborted) throw abortError(c.cancel.reason, this.deployment);
      // First come, first served: while calls wait, a new one queues behind them
      // instead of taking the slot a woken waiter is about to use.
      const r = woken || (this.#queue.length === 0 && this.#handoffs === 0) ? this.#pick(Date.now(), c.modelId) : undefined;
      if (!r) {
        await this.#wait(c.cancel, woken);
        this.#handoffs--;
        woken = true;
        continue;
      }
      r.inflight++;
      const extra: CallExtra | undefined =
        c.modelId || c.traceparent ? { ...(c.modelId && { x: c.modelId }), ...(c.traceparent && { tp: c.traceparent, q: performance.now() - queuedAt }) } : undefined;
      const { id, reply } = r.send(c.method, c.args, c.requestId, c.sink, c.keep, extra);
      c.onSent?.(r, id);
      let res;
      try {
        res = await (c.cancel ? raceAbort(reply, c.cancel, () => r.cancel(id), this.deployment) : reply);
      } catch (e) {
        if (countsAgainstReplica(e, this.deployment, c.cancel?.aborted === true)) this.#outliers.failed(r, this.replicas);
        const lost = lostCall(e);
        // Sent again elsewhere: a call that never left (while another replica is left to take it), or
        // one the caller called idempotent, whose replica died before any chunk of it came back.
        if ((lost === "unsent" && this.replicas.length > 0) || (lost === "inflight" && retries > 0 && !c.sink)) {
          if (lost === "inflight") retries--;
          woken = true;
          continue;
        }
        throw e;
      } finally {
        r.inflight--;
        this.#wakeOne();
      }
      if (!res.busy) {
        this.#outliers.succeeded(r);
        return res.value;
      }
      r.busyUntil = Date.now() + BUSY_BACKOFF_MS;
      woken = true; // a retry keeps its place ahead of the queue
    }
  }

  /** Waits for a slot; `again` (a woken call that found none) goes back to the head of the queue. */
  #wait(cancel: CancelToken | undefined, again: boolean): Promise<void> {
    if (!again && this.maxQueued >= 0 && this.#queue.length >= this.maxQueued) {
      throw new ServeError("unavailable", `${this.deployment} is at capacity and its queue is full (maxQueuedRequests ${this.maxQueued}); retry later or add replicas`, {
        deployment: this.deployment,
      });
    }
    return new Promise<void>((resolve, reject) => {
      let cleanup = () => {};
      const w: Waiter = { wake: () => (this.#handoffs++, cleanup(), resolve()) };
      if (cancel) {
        cleanup = cancel.onAbort((reason) => {
          const i = this.#queue.indexOf(w);
          if (i >= 0) this.#queue.splice(i, 1);
          reject(abortError(reason, this.deployment));
        });
      }
      if (again) this.#queue.unshift(w);
      else this.#queue.push(w);
      this.#armTimer();
    });
  }

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
    this.#queue.shift()?.wake();
  }

  #wakeAll(): void {
    const q = this.#queue.splice(0);
    for (const w of q) w.wake();
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

function raceAbort<T>(p: Promise<T>, cancel: CancelToken, onAbort: () => void, deployment: string): Promise<T> {
  if (cancel.aborted) {
    onAbort();
    return Promise.reject(abortError(cancel.reason, deployment));
  }
  return new Promise<T>((resolve, reject) => {
    const stop = cancel.onAbort((reason) => {
      onAbort();
      reject(abortError(reason, deployment));
    });
    p.then(
      (v) => (stop(), resolve(v)),
      (e) => (stop(), reject(e)),
    );
  });
}
