import { AsyncLocalStorage } from "node:async_hooks";

/** What user code can know about the request it is serving. */
export interface RequestContext {
  requestId: string;
  /** Fires when the request times out or the client goes away. */
  signal: AbortSignal;
}

const storage = new AsyncLocalStorage<RequestContext>();
const idle: RequestContext = { requestId: "", signal: new AbortController().signal };

/**
 * The current request's id and abort signal, inside a deployment's code.
 * @example
 * const { requestId, signal } = requestContext();
 * await fetch(url, { signal });
 */
export function requestContext(): RequestContext {
  return storage.getStore() ?? idle;
}

/** Runs `fn` with `ctx` as the current request context. */
export function withRequestContext<T>(ctx: RequestContext, fn: () => T): T {
  return storage.run(ctx, fn);
}

/** The request context if one is active, else undefined. */
export function currentRequestContext(): RequestContext | undefined {
  return storage.getStore();
}

/**
 * An AbortController made only when someone asks for its signal: most calls
 * finish without anyone reading it, and creating one per call is measurable
 * on the hot path.
 */
export class LazyAbort {
  #ctl: AbortController | null = null;
  #reason: unknown = undefined;
  #aborted = false;

  get signal(): AbortSignal {
    if (!this.#ctl) {
      this.#ctl = new AbortController();
      if (this.#aborted) this.#ctl.abort(this.#reason);
    }
    return this.#ctl.signal;
  }

  get aborted(): boolean {
    return this.#aborted;
  }

  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#ctl?.abort(reason);
  }
}
