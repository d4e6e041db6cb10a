import { ServeError } from "../error.ts";
import type { CallOptions, Invoker } from "./invoker.ts";
import { currentRequestContext, signalToken } from "./request-context.ts";

type AnyFunction = (...args: any[]) => any;
type Resolvable<T> = T | DeploymentResponse<T>;
type RemoteArgs<P extends unknown[]> = { [K in keyof P]: Resolvable<P[K]> };

/** Per-handle call options. */
export interface HandleOptions {
  /** Which method `handle.remote()` calls (default: the function, or `__call__`). */
  method?: string;
  /** Fail the call with 504 after this many seconds. */
  timeoutS?: number;
  /** `remote()` returns an async iterator over an async-generator method's chunks. */
  stream?: boolean;
}

const RESPONSE = Symbol.for("serve-bin.response");

/**
 * The result of `handle.remote()`: awaitable, and passable un-awaited as an
 * argument to another `.remote()` call. A failure nobody awaits is swallowed,
 * never an unhandled rejection.
 */
export class DeploymentResponse<T = unknown> implements PromiseLike<T> {
  readonly [RESPONSE] = true;
  readonly #promise: Promise<T>;
  constructor(promise: Promise<T>) {
    promise.catch(() => {});
    this.#promise = promise;
  }
  then<A = T, B = never>(ok?: ((v: T) => A | PromiseLike<A>) | null, fail?: ((e: unknown) => B | PromiseLike<B>) | null): Promise<A | B> {
    return this.#promise.then(ok, fail);
  }
  catch<B = never>(fail: (e: unknown) => B | PromiseLike<B>): Promise<T | B> {
    return this.#promise.catch(fail);
  }
  /** The underlying promise. */
  get promise(): Promise<T> {
    return this.#promise;
  }
}

export function isResponse(v: unknown): v is DeploymentResponse {
  return typeof v === "object" && v !== null && (v as Record<symbol, unknown>)[RESPONSE] === true;
}

type MethodHandles<T> = {
  [K in keyof T as T[K] extends AnyFunction ? (K extends "constructor" ? never : K) : never]: T[K] extends (...a: infer P) => infer R
    ? { remote(...args: RemoteArgs<P>): DeploymentResponse<Awaited<R>> }
    : never;
};
type CallRemote<T> = T extends { __call__: (...a: infer P) => infer R }
  ? (...args: RemoteArgs<P>) => DeploymentResponse<Awaited<R>>
  : (...args: unknown[]) => DeploymentResponse<any>;

/**
 * A client for another deployment. In a graph, a node passed as a class's init
 * argument arrives as a handle.
 * @example
 * const out = await this.m1.forward.remote(req);
 */
export type DeploymentHandle<T = any> = (T extends AnyFunction
  ? { remote(...args: RemoteArgs<Parameters<T>>): DeploymentResponse<Awaited<ReturnType<T>>> }
  : MethodHandles<T> & { remote: CallRemote<T> }) & {
  readonly deploymentName: string;
  options(opts: HandleOptions): DeploymentHandle<T>;
};

/** What a handle knows about its target, from the graph. */
export interface HandleTarget {
  name: string;
  kind: "function" | "class";
  methods: readonly string[];
}

async function resolveArgs(args: unknown[]): Promise<unknown[]> {
  if (!args.some(isResponse)) return args;
  return Promise.all(args.map((a) => (isResponse(a) ? a.promise : a)));
}

function callOptions(opts: HandleOptions): CallOptions {
  const ctx = currentRequestContext();
  return { timeoutS: opts.timeoutS, requestId: ctx?.requestId, cancel: ctx?.cancel ?? (ctx ? signalToken(ctx.signal) : undefined) };
}

/** Builds the handle object for `target`, calling through `invoker`. */
export function createHandle<T>(target: HandleTarget, invoker: Invoker, opts: HandleOptions = {}): DeploymentHandle<T> {
  const checkMethod = (method: string | null): string | null => {
    if (target.kind === "function") return null;
    if (method === null) {
      if (!target.methods.includes("__call__")) {
        throw new ServeError(
          "build",
          `${target.name} has no __call__, so handle.remote() cannot call it; call one of its methods: ${target.methods.map((m) => `handle.${m}.remote()`).join(", ")}`,
          { deployment: target.name },
        );
      }
      return "__call__";
    }
    if (!target.methods.includes(method)) {
      throw new ServeError("build", `${target.name} has no method "${method}"; its methods are: ${target.methods.join(", ")}`, {
        deployment: target.name,
      });
    }
    return method;
  };
  const remote = (method: string | null) => {
    const m = checkMethod(method);
    return (...args: unknown[]) => {
      const co = callOptions(opts);
      if (opts.stream) return streamOf(resolveArgs(args), (a) => invoker.stream(target.name, m, a, co));
      return new DeploymentResponse(resolveArgs(args).then((a) => invoker.call(target.name, m, a, co)));
    };
  };
  const base = {
    deploymentName: target.name,
    options: (more: HandleOptions) => createHandle<T>(target, invoker, { ...opts, ...more }),
    get remote() {
      return remote(opts.method ?? null);
    },
    get then(): never {
      throw new ServeError("build", `a handle to ${target.name} is not awaitable: await handle.remote(...) or handle.method.remote(...)`);
    },
  };
  return new Proxy(base, {
    get(t, prop, receiver) {
      if (typeof prop === "symbol" || prop in t) return Reflect.get(t, prop, receiver);
      return { remote: remote(prop) };
    },
  }) as unknown as DeploymentHandle<T>;
}

async function* streamOf(args: Promise<unknown[]>, open: (a: unknown[]) => AsyncIterable<unknown>): AsyncGenerator<unknown> {
  yield* open(await args);
}
