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
  /** Tells `l` once when aborted (at once if it is), until `removeListener(l)`: no remover closure per listener. */
  addListener(l: AbortListener): void;
  removeListener(l: AbortListener): void;
}

/** What a CancelToken tells when it aborts: a function, or an object's `cancelled` (a call's own state object, with no closure). */
export type AbortListener = ((reason: unknown) => void) | { cancelled(reason: unknown): void };

function tell(l: AbortListener, reason: unknown): void {
  if (typeof l === "function") l(reason);
  else l.cancelled(reason);
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

/** Runs `fn(...args)` with `ctx` as the current request context. */
export function withRequestContext<T, A extends unknown[] = []>(ctx: RuntimeContext, fn: (...args: A) => T, ...args: A): T {
  return storage.run(ctx, fn, ...args);
}

/** The request context if one is active, else undefined. */
export function currentRequestContext(): RuntimeContext | undefined {
  return storage.getStore();
}

/** A context whose signal is made on first read (a class: its getter is not made anew per call). */
class LazyContext implements RuntimeContext {
  traceparent?: string;

  constructor(
    readonly requestId: string,
    readonly cancel: LazyAbort,
  ) {}

  get signal(): AbortSignal {
    return this.cancel.signal;
  }
}

/** A context whose signal is made on first read. */
export function lazyContext(requestId: string, cancel: LazyAbort): RuntimeContext {
  return new LazyContext(requestId, cancel);
}

/** A CancelToken over an AbortSignal (a user's, or a timeout's). */
export function signalToken(signal: AbortSignal): CancelToken {
  let added: Map<AbortListener, () => void> | undefined;
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
    addListener(l) {
      if (signal.aborted) return tell(l, signal.reason);
      const listener = () => tell(l, signal.reason);
      (added ??= new Map()).set(l, listener);
      signal.addEventListener("abort", listener, { once: true });
    },
    removeListener(l) {
      const listener = added?.get(l);
      if (!listener) return;
      added!.delete(l);
      signal.removeEventListener("abort", listener);
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
  #one: AbortListener | null = null;
  #listeners: Set<AbortListener> | null = null;

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
    this.addListener(fn);
    return () => this.removeListener(fn);
  }

  addListener(l: AbortListener): void {
    if (this.#aborted) return tell(l, this.#reason);
    // Most tokens get one listener at a time: no Set for it.
    if (!this.#one && !this.#listeners) this.#one = l;
    else (this.#listeners ??= new Set()).add(l);
  }

  removeListener(l: AbortListener): void {
    if (this.#one === l) this.#one = null;
    else this.#listeners?.delete(l);
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
    if (one) tell(one, reason); // the first added, when it is still there
    if (listeners) for (const l of listeners) tell(l, reason);
  }
}
