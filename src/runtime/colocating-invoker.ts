import { ServeError } from "../error.ts";
import type { CallOptions, Invoker } from "../api/invoker.ts";
import { LazyAbort } from "../api/request-context.ts";
import { InProcessInvoker } from "../graph/local.ts";
import type { GraphIR } from "../graph/ir.ts";
import { KeptRef } from "../wire/codec.ts";

/**
 * A replica's invoker when its application has colocated deployments: calls
 * to those run in this process (constructed on first use, once per process,
 * with their configured userConfig); every other call goes to `remote`. A
 * colocated deployment's own calls come back here, so colocation nests.
 */
export class ColocatingInvoker implements Required<Invoker> {
  readonly #here: InProcessInvoker;
  readonly #local: ReadonlySet<string>;

  constructor(
    ir: GraphIR,
    colocated: readonly { name: string; userConfig?: unknown }[],
    readonly remote: Required<Invoker>,
  ) {
    const configs = new Map(colocated.map((c) => [c.name, c.userConfig]));
    this.#local = new Set(configs.keys());
    this.#here = new InProcessInvoker(ir, (name) => configs.get(name), this);
  }

  /** Whether calls to `deployment` run in this process. */
  runsHere(deployment: string): boolean {
    return this.#local.has(deployment);
  }

  async call(deployment: string, method: string | null, args: unknown[], opts: CallOptions = {}): Promise<unknown> {
    if (!this.#local.has(deployment)) return this.remote.call(deployment, method, args, opts);
    const a = await this.#fetched(args);
    if (opts.timeoutS === undefined) return this.#here.call(deployment, method, a, opts);
    const d = deadline(deployment, opts);
    try {
      return await Promise.race([this.#here.call(deployment, method, a, { ...opts, cancel: d.cancel }), d.expired]);
    } finally {
      d.clear();
    }
  }

  async *stream(deployment: string, method: string | null, args: unknown[], opts: CallOptions = {}): AsyncGenerator<unknown> {
    if (!this.#local.has(deployment)) return yield* this.remote.stream(deployment, method, args, opts);
    const a = await this.#fetched(args);
    if (opts.timeoutS === undefined) return yield* this.#here.stream(deployment, method, a, opts);
    // As across processes, timeoutS bounds the whole stream.
    const d = deadline(deployment, opts);
    const it = this.#here.stream(deployment, method, a, { ...opts, cancel: d.cancel })[Symbol.asyncIterator]();
    try {
      for (;;) {
        const r = await Promise.race([it.next(), d.expired]);
        if (r.done) return;
        yield r.value;
      }
    } finally {
      d.clear();
      void it.return?.(undefined).catch(() => {});
    }
  }

  /** A colocated call keeps nothing: its value is its own reference (handles pass a non-KeptRef on as the value). */
  callKept(deployment: string, method: string | null, args: unknown[], opts?: CallOptions): Promise<KeptRef> {
    if (!this.#local.has(deployment)) return this.remote.callKept(deployment, method, args, opts);
    return this.call(deployment, method, args, opts) as Promise<KeptRef>;
  }

  fetchKept(ref: KeptRef): Promise<unknown> {
    return this.remote.fetchKept(ref);
  }

  releaseKept(ref: KeptRef): void {
    this.remote.releaseKept(ref);
  }

  /** A remote result forwarded to a colocated call arrives as a reference: fetch its value first, as a replica would. */
  #fetched(args: unknown[]): unknown[] | Promise<unknown[]> {
    if (!args.some((a) => a instanceof KeptRef)) return args;
    return Promise.all(args.map((a) => (a instanceof KeptRef ? this.remote.fetchKept(a) : a)));
  }
}

/**
 * A handle's timeoutS for a colocated callee: past it, `expired` rejects with
 * the 504 a call across processes gets, and the callee's signal aborts.
 */
function deadline(deployment: string, opts: CallOptions): { cancel: LazyAbort; expired: Promise<never>; clear(): void } {
  const cancel = LazyAbort.child(opts.cancel);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const e = new ServeError("timeout", `the call to ${deployment} took longer than its handle's timeoutS; raise timeoutS in handle.options() or make ${deployment} faster`, { deployment });
      cancel.abort(e);
      reject(e);
    }, opts.timeoutS! * 1000);
  });
  expired.catch(() => {});
  return { cancel, expired, clear: () => clearTimeout(timer) };
}
