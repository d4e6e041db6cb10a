import { MAX_SECONDS } from "../config/schema.ts";
import { ServeError } from "../error.ts";
import { KeptRef } from "../wire/codec.ts";
import type { CallOptions, Invoker } from "./invoker.ts";
import { currentRequestContext, signalToken } from "./request-context.ts";
import { checkModelId } from "./multiplex.ts";

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
  /** The model id a `@multiplexed` deployment should serve this call with (default: the current request's). */
  multiplexedModelId?: string;
  /**
   * Says the method is idempotent: a call whose replica dies while running it
   * is sent again to another replica, at most this many times (0 to 10;
   * default 0: it fails with 503). A call that never reached a replica is
   * always sent again. Streams are not resent.
   * @example this.model.options({ maxRetries: 2 }).predict.remote(x)
   */
  maxRetries?: number;
}

/** The most a handle resends one call: each resend runs the method again on another replica. */
export const MAX_RETRIES = 10;

const RESPONSE = Symbol.for("serve-bin.response");
/** Marks a promise's failure as handled (one shared function, not a closure per call). */
const ignore = (): void => {};

/**
 * A call through a forwarding invoker (one that crosses processes). It starts
 * in a microtask, not at once, so that a response passed synchronously as a
 * top-level argument of another `.remote()` can be forwarded instead: its
 * result stays in the replica that made it, the outer call gets a reference,
 * and the value goes from that replica to the outer call's replica without
 * passing through this process. Its holder releases the kept result when the
 * outer call completes; awaiting the response before that fetches it here.
 */
class Forwardable {
  /** "open" until the call starts: then "plain" (its value comes back) or "kept". */
  #mode: "open" | "plain" | "kept" = "open";
  /** The call: its value ("plain") or its reference ("kept"). */
  readonly run: Promise<unknown>;
  /** Outer calls that carry the reference and have not completed. */
  #holders = 0;
  /** The deployments the result was forwarded to (made on the first forward: most calls are never forwarded). */
  #to: string[] | null = null;
  #released = false;
  /** This process's copy of a kept value, once awaited. */
  #fetched: Promise<unknown> | null = null;

  constructor(
    readonly invoker: Required<Pick<Invoker, "fetchKept" | "releaseKept">>,
    readonly deployment: string,
    start: (keep: boolean) => Promise<unknown>,
  ) {
    this.run = Promise.resolve().then(() => {
      if (this.#mode === "open") this.#mode = "plain";
      return start(this.#mode === "kept");
    });
    this.run.catch(ignore);
  }

  /** Called by an outer `.remote()`: true when the reference (`run`) will stand for the value, to be handed back with `done()`. */
  forward(to: string): boolean {
    if (this.#mode === "open") this.#mode = "kept";
    if (this.#mode !== "kept" || this.#released) return false;
    this.#holders++;
    (this.#to ??= []).push(to);
    return true;
  }

  /**
   * An outer call that carried the reference completed. The release waits one
   * macrotask, so that code awaiting the response right after that call
   * (`await b.remote(r); await r`, a microtask later) still gets the value.
   * setImmediate, not setTimeout(0): a timer waits at least 1 ms, so it can
   * wake an otherwise idle process once more.
   */
  done(): void {
    if (--this.#holders > 0) return;
    setImmediate(() => {
      if (this.#fetched) void this.#fetched.then(() => this.#release(), () => this.#release());
      else this.#release();
    });
  }

  #release(): void {
    if (this.#released || this.#holders > 0) return; // passed on again meanwhile: the last holder releases
    this.#released = true;
    this.run.then((ref) => ref instanceof KeptRef && this.invoker.releaseKept(ref), () => {});
  }

  /** The value, for user code that awaits the response. */
  value(): Promise<unknown> {
    if (this.#mode === "open") this.#mode = "plain";
    if (this.#mode === "plain") return this.run;
    if (this.#fetched) return this.#fetched;
    if (this.#released) {
      // A call that failed keeps nothing: its own error is the answer.
      const to = [...new Set(this.#to)].join(", ");
      return this.run.then(() => {
        throw new ServeError("user", `the result of ${this.deployment} was forwarded to ${to} and released, so it cannot be awaited any more; await it before passing it on, or as soon as the call it was passed to completes`, {
          deployment: this.deployment,
        });
      });
    }
    this.#fetched = this.run.then((ref) => (ref instanceof KeptRef ? this.invoker.fetchKept(ref) : ref));
    this.#fetched.catch(ignore);
    return this.#fetched;
  }
}

/**
 * The result of `handle.remote()`: awaitable, and passable un-awaited as an
 * argument to another `.remote()` call. A failure nobody awaits is swallowed,
 * never an unhandled rejection.
 */
export class DeploymentResponse<T = unknown> implements PromiseLike<T> {
  readonly [RESPONSE] = true;
  readonly #promise: Promise<T> | null;
  /** @internal set when the call goes through a forwarding invoker */
  readonly fwd: Forwardable | null;
  constructor(promise: Promise<T> | Forwardable) {
    if (promise instanceof Forwardable) {
      this.fwd = promise;
      this.#promise = null;
    } else {
      promise.catch(ignore);
      this.fwd = null;
      this.#promise = promise;
    }
  }
  then<A = T, B = never>(ok?: ((v: T) => A | PromiseLike<A>) | null, fail?: ((e: unknown) => B | PromiseLike<B>) | null): Promise<A | B> {
    return this.promise.then(ok, fail);
  }
  catch<B = never>(fail: (e: unknown) => B | PromiseLike<B>): Promise<T | B> {
    return this.promise.catch(fail);
  }
  /** The underlying promise. */
  get promise(): Promise<T> {
    return this.#promise ?? (this.fwd!.value() as Promise<T>);
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

/** Whether any argument is a DeploymentResponse (most calls carry none: a plain loop, no closure). */
function hasResponse(args: unknown[]): boolean {
  for (let i = 0; i < args.length; i++) if (isResponse(args[i])) return true;
  return false;
}

async function resolveArgs(args: unknown[]): Promise<unknown[]> {
  if (!hasResponse(args)) return args;
  return Promise.all(args.map((a) => (isResponse(a) ? a.promise : a)));
}

function callOptions(opts: HandleOptions): CallOptions {
  const ctx = currentRequestContext();
  const co: CallOptions = {
    timeoutS: opts.timeoutS,
    requestId: ctx?.requestId,
    cancel: ctx?.cancel ?? (ctx ? signalToken(ctx.signal) : undefined),
  };
  // Optional fields only when given, as before, without an object spread per call.
  if (opts.multiplexedModelId !== undefined) co.multiplexedModelId = checkModelId(opts.multiplexedModelId);
  if (opts.maxRetries) co.maxRetries = opts.maxRetries;
  return co;
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
  const forwarding = invoker.callKept && invoker.fetchKept && invoker.releaseKept ? (invoker as Required<Invoker>) : null;
  // One `remote` function per method, made on first use: `this.next.remote(x)` runs per call.
  const remotes = new Map<string | null, (...args: unknown[]) => unknown>();
  const remote = (method: string | null) => {
    let fn = remotes.get(method);
    if (fn === undefined) remotes.set(method, (fn = makeRemote(checkMethod(method))));
    return fn;
  };
  const makeRemote = (m: string | null) => (...args: unknown[]) => {
    const co = callOptions(opts);
    if (opts.stream) return streamOf(resolveArgs(args), (a) => invoker.stream(target.name, m, a, co));
    if (!forwarding) return new DeploymentResponse(resolveArgs(args).then((a) => invoker.call(target.name, m, a, co)));
    // Most calls carry no response: then nothing is held, and no Promise.all runs.
    if (!hasResponse(args)) {
      return new DeploymentResponse(new Forwardable(forwarding, target.name, (keep) => (keep ? forwarding.callKept(target.name, m, args, co) : forwarding.call(target.name, m, args, co))));
    }
    // Decided now, synchronously: which un-started responses this call carries by reference.
    const held = args.map((a) => (isResponse(a) && a.fwd?.forward(target.name) ? a.fwd : null));
    const start = async (keep: boolean) => {
      try {
        const a = await Promise.all(args.map((x, i) => (held[i] ? held[i].run : isResponse(x) ? x.promise : x)));
        return await (keep ? forwarding.callKept(target.name, m, a, co) : forwarding.call(target.name, m, a, co));
      } finally {
        for (const h of held) h?.done();
      }
    };
    return new DeploymentResponse(new Forwardable(forwarding, target.name, start));
  };
  const base = {
    deploymentName: target.name,
    options: (more: HandleOptions) => createHandle<T>(target, invoker, { ...opts, ...checkRetries(checkTimeout(more, target.name), target.name) }),
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

/** A handle's timeoutS must be one a timer can wait: longer ones would wrap and fire at once. */
function checkTimeout(opts: HandleOptions, deployment: string): HandleOptions {
  const t = opts.timeoutS;
  if (t !== undefined && !(typeof t === "number" && t > 0 && t <= MAX_SECONDS)) {
    throw new ServeError(
      "build",
      `handle.options({ timeoutS: ${String(t)} }) for ${deployment}: expected a number of seconds > 0 and at most ${MAX_SECONDS} (about 24.8 days, the longest a timer can wait)`,
      { deployment },
    );
  }
  return opts;
}

/** Retries are bounded: each one runs the method again, on another replica. */
function checkRetries(opts: HandleOptions, deployment: string): HandleOptions {
  const n = opts.maxRetries;
  if (n !== undefined && !(Number.isInteger(n) && n >= 0 && n <= MAX_RETRIES)) {
    throw new ServeError(
      "build",
      `handle.options({ maxRetries: ${String(n)} }) for ${deployment}: expected a whole number from 0 to ${MAX_RETRIES}; each retry runs the method again on another replica, so set it only for idempotent methods`,
      { deployment },
    );
  }
  return opts;
}

async function* streamOf(args: Promise<unknown[]>, open: (a: unknown[]) => AsyncIterable<unknown>): AsyncGenerator<unknown> {
  yield* open(await args);
}
