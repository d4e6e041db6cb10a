import { AsyncLocalStorage } from "node:async_hooks";

/** What user code can know about the request it is serving. */
export interface RequestContext {
  requestId: string;
  /** Fires when the request times out or the client goes away. */
  signal: AbortSignal;
}

/**
 * Cancellation as the runtime passes it along, without an AbortSignal per
 * call: `signal` is made only when user code asks for it.
 */
export interface CancelToken {
  readonly aborted: boolean;
  readonly reason: unknown;
  /** Calls `fn` once when aborted; returns a function that stops listening. */
  onAbort(fn: (reason: unknown) => void): () => void;
}

/** A request context as the runtime makes it: the public fields plus its cancel token. */
export interface RuntimeContext extends RequestContext {
  cancel?: CancelToken;
  /** W3C traceparent for calls made in this context (tracing on only). */
  traceparent?: string;
}

const storage = new AsyncLocalStorage<RuntimeContext>();
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
export function withRequestContext<T>(ctx: RuntimeContext, fn: () => T): T {
  return storage.run(ctx, fn);
}

/** The request context if one is active, else undefined. */
export function currentRequestContext(): RuntimeContext | undefined {
  return storage.getStore();
}

/** A context whose signal is made on first read. */
export function lazyContext(requestId: string, cancel: LazyAbort): RuntimeContext {
  return {
    requestId,
    cancel,
    get signal() {
      return cancel.signal;
    },
  };
}

/** A CancelToken over an AbortSignal (a user's, or a timeout's). */
export function signalToken(signal: AbortSignal): CancelToken {
  return {
    get aborted() {
      return signal.aborted;
    },
    get reason() {
      return signal.reason;
    },
    onAbort(fn) {
      const listener = () => fn(signal.reason);
      signal.addEventListener("abort", listener, { once: true });
      return () => signal.removeEventListener("abort", listener);
    },
  };
}

/**
 * An AbortController made only when someone asks for its signal: most calls
 * finish without anyone reading it, and creating one per call is measurable
 * on the hot path.
 */
export class LazyAbort implements CancelToken {
  #ctl: AbortController | null = null;
  #reason: unknown = undefined;
  #aborted = false;
  #one: ((reason: unknown) => void) | null = null;
  #listeners: Set<(reason: unknown) => void> | null = null;

  /** A token that aborts with its parent (if any). */
  static child(parent: CancelToken | undefined): LazyAbort {
    const t = new LazyAbort();
    if (parent?.aborted) t.abort(parent.reason);
    else parent?.onAbort((r) => t.abort(r));
    return t;
  }

  get reason(): unknown {
    return this.#reason;
  }

  onAbort(fn: (reason: unknown) => void): () => void {
    if (this.#aborted) {
      fn(this.#reason);
      return () => {};
    }
    // Most tokens get one listener at a time: no Set for it.
    if (!this.#one && !this.#listeners) {
      this.#one = fn;
      return () => {
        if (this.#one === fn) this.#one = null;
      };
    }
    (this.#listeners ??= new Set()).add(fn);
    return () => void this.#listeners?.delete(fn);
  }

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
    const one = this.#one;
    const listeners = this.#listeners;
    this.#one = null;
    this.#listeners = null;
    one?.(reason); // the first added, when it is still there
    if (listeners) for (const fn of listeners) fn(reason);
  }
}
