import type { CallOptions, Invoker } from "../api/invoker.ts";
import { selectInput, wholeInput } from "../api/input-node.ts";
import type { GraphIR, IRNode } from "./ir.ts";
import { isRef, mapTemplate, NodeRef } from "./template.ts";

const AsyncGeneratorFunction = Object.getPrototypeOf(async function* () {}).constructor;

type CallNode = Extract<IRNode, { kind: "call" }>;

/** Whether a deployment's function (or method) is an async generator, whose result streams. */
function streams(ir: GraphIR, deployment: string, method: string | null): boolean {
  const d = ir.deployments.get(deployment)!;
  const fn = d.kind === "function" ? d.def.target : (d.def.target as { prototype?: Record<string, unknown> }).prototype?.[method ?? "__call__"];
  return fn instanceof AsyncGeneratorFunction;
}

/** A call's arguments with its refs' values in place (`values[i]` is the value of `node.refs[i]`): one pass when the IR says they are flat, else a copy. */
function fill(node: CallNode, values: readonly unknown[]): unknown[] {
  const refs = node.refs;
  if (!node.flatArgs) return fillNested(node, values);
  const out = new Array<unknown>(node.args.length);
  for (let i = 0; i < out.length; i++) {
    const a = node.args[i];
    out[i] = a instanceof NodeRef ? valueOf(refs, values, a.id) : a;
  }
  return out;
}

/** fill() for arguments that nest refs: apart, so that fill() makes no scope for this closure on the flat path. */
function fillNested(node: CallNode, values: readonly unknown[]): unknown[] {
  const refs = node.refs;
  return mapTemplate(node.args, isRef, (r: NodeRef) => valueOf(refs, values, r.id)) as unknown[];
}

/** The value of ref `id`, given `values[i]` for `refs[i]`. */
function valueOf(refs: readonly number[], values: readonly unknown[], id: number): unknown {
  return refs.length === 1 ? values[0] : values[refs.indexOf(id)];
}

const UNSET = Symbol("unset");
const ignore = () => {};

/**
 * Evaluates the graph under `from` for one request. Each node is computed at
 * most once, and a node starts as soon as its inputs are ready, so
 * independent branches run concurrently. Local execution and serving differ
 * only in the invoker. When the node evaluated is an async generator, its
 * chunks stream: the result is an async iterable.
 *
 * A node whose inputs are at hand (the request's input, a field of it) is
 * worked out at once; only a call waits, so a graph of one call costs its
 * call and nothing more (a promise and an async function per node were most
 * of a request's garbage in the DAGDriver).
 */
export function walkGraph(ir: GraphIR, from: number, args: readonly unknown[], invoker: Invoker, opts: CallOptions): Promise<unknown> {
  try {
    const out = new Walk(ir, from, args, invoker, opts).evaluate(from);
    return out instanceof Promise ? out : Promise.resolve(out);
  } catch (e) {
    return Promise.reject(e);
  }
}

/** One request's walk: a value, or a promise of it, per node evaluated. */
class Walk {
  readonly memo: unknown[];

  constructor(
    readonly ir: GraphIR,
    readonly from: number,
    readonly args: readonly unknown[],
    readonly invoker: Invoker,
    readonly opts: CallOptions,
  ) {
    this.memo = new Array(ir.nodes.length).fill(UNSET);
  }

  evaluate(id: number): unknown {
    const v = this.memo[id];
    return v !== UNSET ? v : (this.memo[id] = this.evaluateNode(this.ir.nodes[id]!));
  }

  call(node: CallNode | Extract<IRNode, { kind: "instance" }>, callArgs: unknown[]): unknown {
    const method = node.kind === "call" ? node.method : "__call__";
    if (node.id === this.from && streams(this.ir, node.deployment, method)) return this.invoker.stream(node.deployment, method, callArgs, this.opts);
    return this.invoker.call(node.deployment, method, callArgs, this.opts);
  }

  evaluateNode(node: IRNode): unknown {
    switch (node.kind) {
      case "input":
        return wholeInput(this.args);
      case "select": {
        if (node.fromInput) return selectInput(this.args, node.key);
        const of = this.evaluate(node.of);
        return of instanceof Promise ? selectLater(of, node.key) : pick(of, node.key);
      }
      case "call": {
        const refs = node.refs;
        if (refs.length === 0) return this.call(node, node.args);
        if (refs.length === 1) {
          const v = this.evaluate(refs[0]!);
          return v instanceof Promise ? this.callLater(node, v) : this.call(node, fill(node, [v]));
        }
        const values = new Array<unknown>(refs.length);
        for (let i = 0; i < refs.length; i++) {
          try {
            values[i] = this.evaluate(refs[i]!);
          } catch (e) {
            // The calls already under way still settle: nobody will read them now.
            for (let j = 0; j < i; j++) if (values[j] instanceof Promise) (values[j] as Promise<unknown>).catch(ignore);
            throw e;
          }
        }
        return anyPromise(values) ? this.callLater(node, Promise.all(values)) : this.call(node, fill(node, values));
      }
      case "instance":
        return this.call(node, [...this.args]);
    }
  }

  /**
   * Calls `node` once its argument (or all of them, as an array) is there. Its closure is made here,
   * not in evaluateNode: a function whose inner closures capture its locals gets a scope object on
   * every call, whichever branch runs, and evaluateNode runs for every node of every request.
   */
  callLater(node: CallNode, arg: Promise<unknown>): Promise<unknown> {
    return arg.then((x) => this.call(node, fill(node, node.refs.length > 1 ? (x as unknown[]) : [x])));
  }
}

function pick(v: unknown, key: string | number): unknown {
  return (v as Record<string | number, unknown> | null | undefined)?.[key];
}

function selectLater(of: Promise<unknown>, key: string | number): Promise<unknown> {
  return of.then((v) => pick(v, key));
}

function anyPromise(values: unknown[]): boolean {
  for (const v of values) if (v instanceof Promise) return true;
  return false;
}
