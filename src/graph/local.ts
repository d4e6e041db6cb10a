import { ServeError } from "../error.ts";
import type { CallOptions, Invoker } from "../api/invoker.ts";
import { setLocalExecutor, type DAGNode } from "../api/nodes.ts";
import { LazyAbort, lazyContext, withRequestContext } from "../api/request-context.ts";
import { currentModelId, withModelId } from "../api/multiplex.ts";
import { roundTrip } from "../wire/codec.ts";
import { buildGraph, type GraphIR } from "./ir.ts";
import { instantiate, type Callable } from "./instantiate.ts";
import { walkGraph } from "./walk.ts";

/**
 * Runs a graph in this process. Each class node is constructed once per
 * graph and reused; values cross every call through the wire codec, so a
 * graph answers the same locally as served.
 */
class LocalInvoker implements Invoker {
  readonly #instances = new Map<string, Promise<Callable>>();
  constructor(readonly ir: GraphIR) {}

  #callable(name: string): Promise<Callable> {
    let c = this.#instances.get(name);
    if (!c) {
      const d = this.ir.deployments.get(name)!;
      c = instantiate(this.ir, name, this, d.def.options.userConfig);
      this.#instances.set(name, c);
    }
    return c;
  }

  async call(deployment: string, method: string | null, args: unknown[], opts: CallOptions = {}): Promise<unknown> {
    const fn = (await this.#callable(deployment)).resolve(method);
    const ctx = lazyContext(opts.requestId ?? crypto.randomUUID(), LazyAbort.child(opts.cancel));
    const modelId = opts.multiplexedModelId ?? currentModelId();
    const run = () => withRequestContext(ctx, () => fn(...roundTrip(args)));
    try {
      const out = await (modelId ? withModelId(modelId, run) : run());
      return roundTrip(out);
    } catch (e) {
      throw ServeError.fromUser(e, deployment);
    }
  }

  async *stream(deployment: string, method: string | null, args: unknown[], opts: CallOptions = {}): AsyncGenerator<unknown> {
    const fn = (await this.#callable(deployment)).resolve(method);
    const ctx = lazyContext(opts.requestId ?? crypto.randomUUID(), LazyAbort.child(opts.cancel));
    const it = withRequestContext(ctx, () => fn(...roundTrip(args))) as AsyncIterable<unknown>;
    try {
      for await (const chunk of it) yield roundTrip(chunk);
    } catch (e) {
      throw ServeError.fromUser(e, deployment);
    }
  }
}

const invokers = new WeakMap<GraphIR, LocalInvoker>();

export function localExecute(node: DAGNode, args: unknown[]): Promise<unknown> {
  const ir = buildGraph(node);
  let inv = invokers.get(ir);
  if (!inv) invokers.set(ir, (inv = new LocalInvoker(ir)));
  const cancel = new LazyAbort();
  const ctx = lazyContext(crypto.randomUUID(), cancel);
  return withRequestContext(ctx, () => walkGraph(ir, ir.root, args, inv, { requestId: ctx.requestId, cancel }));
}

setLocalExecutor(localExecute);
