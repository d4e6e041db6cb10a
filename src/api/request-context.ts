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
