import { ServeError } from "../error.ts";
import type { CallOptions, Invoker } from "../api/invoker.ts";
import { setLocalExecutor, type DAGNode } from "../api/nodes.ts";
import { LazyAbort, lazyContext, withRequestContext } from "../api/request-context.ts";
import { currentModelId, withModelId } from "../api/multiplex.ts";
import { roundTrip } from "../wire/codec.ts";
import { buildGraph, type GraphIR } from "./ir.ts";
import { instantiate, warmUp, type Callable } from "./instantiate.ts";
import { walkGraph } from "./walk.ts";

/**
 * Runs deployments of a graph in this process. Each class node is constructed
 * once (with `userConfigOf(name)`) and reused; values cross every call through
 * the wire codec, so a graph answers the same in-process as served. Local
 * execution runs every deployment this way; a replica runs its colocated ones.
 */
export class InProcessInvoker implements Invoker {
  readonly #instances = new Map<string, Promise<Callable>>();
  /**
   * @param userConfigOf the userConfig a deployment is constructed with
   * @param outer the invoker the instances' handles call through (default: this one)
   */
  constructor(
    readonly ir: GraphIR,
    readonly userConfigOf: (name: string) => unknown = (name) => ir.deployments.get(name)!.def.options.userConfig,
    readonly outer: Invoker | null = null,
  ) {}

  #callable(name: string): Promise<Callable> {
    let c = this.#instances.get(name);
    if (!c) {
      c = instantiate(this.ir, name, this.outer ?? this, this.userConfigOf(name)).then(async (x) => (await warmUp(x, name), x));
      this.#instances.set(name, c);
    }
    return c;
  }

  async call(deployment: string, method: string | null, args: unknown[], opts: CallOptions = {}): Promise<unknown> {
    const fn = (await this.#callable(deployment)).resolve(method);
    const ctx = lazyContext(opts.requestId ?? crypto.randomUUID(), LazyAbort.child(opts.cancel));
    const modelId = opts.multiplexedModelId ?? currentModelId();
    const run = () => withRequestContext(ctx, () => fn(...copied(args)));
    try {
      const out = await (modelId ? withModelId(modelId, run) : run());
      return kept(out) ? out : roundTrip(out);
    } catch (e) {
      throw ServeError.fromUser(e, deployment);
    }
  }

  async *stream(deployment: string, method: string | null, args: unknown[], opts: CallOptions = {}): AsyncGenerator<unknown> {
    const fn = (await this.#callable(deployment)).resolve(method);
    const ctx = lazyContext(opts.requestId ?? crypto.randomUUID(), LazyAbort.child(opts.cancel));
    const it = withRequestContext(ctx, () => fn(...copied(args))) as AsyncIterable<unknown>;
    try {
      for await (const chunk of it) yield roundTrip(chunk);
    } catch (e) {
      throw ServeError.fromUser(e, deployment);
    }
  }
}

/**
 * Values the codec gives back unchanged: numbers, booleans, null, undefined,
 * and well-formed strings (a lone surrogate would come back as U+FFFD). They
 * skip the round trip, the common case of cheap colocated steps.
 */
function kept(v: unknown): boolean {
  const t = typeof v;
  return v === null || t === "number" || t === "boolean" || t === "undefined" || (t === "string" && (v as string).isWellFormed());
}

/** The arguments as the callee would get them from the wire. */
function copied(args: unknown[]): unknown[] {
  for (const a of args) if (!kept(a)) return roundTrip(args);
  return args;
}

const invokers = new WeakMap<GraphIR, InProcessInvoker>();

export function localExecute(node: DAGNode, args: unknown[]): Promise<unknown> {
  const ir = buildGraph(node);
  let inv = invokers.get(ir);
  if (!inv) invokers.set(ir, (inv = new InProcessInvoker(ir)));
  const cancel = new LazyAbort();
  const ctx = lazyContext(crypto.randomUUID(), cancel);
  return withRequestContext(ctx, () => walkGraph(ir, ir.root, args, inv, { requestId: ctx.requestId, cancel }));
}

setLocalExecutor(localExecute);
