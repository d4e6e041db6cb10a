import type { CallOptions, Invoker } from "../api/invoker.ts";
import { selectInput, wholeInput } from "../api/input-node.ts";
import type { GraphIR, IRNode } from "./ir.ts";
import { isRef, mapTemplate, NodeRef } from "./template.ts";

const AsyncGeneratorFunction = Object.getPrototypeOf(async function* () {}).constructor;
const ignore = () => {};

/** Whether a deployment's function (or method) is an async generator, whose result streams. */
function streams(ir: GraphIR, deployment: string, method: string | null): boolean {
  const d = ir.deployments.get(deployment)!;
  const fn = d.kind === "function" ? d.def.target : (d.def.target as { prototype?: Record<string, unknown> }).prototype?.[method ?? "__call__"];
  return fn instanceof AsyncGeneratorFunction;
}

/** A call's arguments with its refs' values in place: one pass when the IR says they are flat, else a copy. */
function fill(node: Extract<IRNode, { kind: "call" }>, value: (id: number) => unknown): unknown[] {
  if (!node.flatArgs) return mapTemplate(node.args, isRef, (r: NodeRef) => value(r.id)) as unknown[];
  const out = new Array<unknown>(node.args.length);
  for (let i = 0; i < out.length; i++) {
    const a = node.args[i];
    out[i] = a instanceof NodeRef ? value(a.id) : a;
  }
  return out;
}

/**
 * Evaluates the graph under `from` for one request. Each node is computed at
 * most once (a promise per node), and a node starts as soon as its inputs are
 * ready, so independent branches run concurrently. Local execution and
 * serving differ only in the invoker. When the node evaluated is an async
 * generator, its chunks stream: the result is an async iterable.
 */
export function walkGraph(ir: GraphIR, from: number, args: readonly unknown[], invoker: Invoker, opts: CallOptions): Promise<unknown> {
  const memo: (Promise<unknown> | undefined)[] = [];
  const evaluate = (id: number): Promise<unknown> => {
    let p = memo[id];
    if (!p) {
      p = evaluateNode(ir.nodes[id]!);
      p.catch(ignore);
      memo[id] = p;
    }
    return p;
  };
  const evaluateNode = async (node: IRNode): Promise<unknown> => {
    switch (node.kind) {
      case "input":
        return wholeInput(args);
      case "select":
        if (node.fromInput) return selectInput(args, node.key);
        return ((await evaluate(node.of)) as Record<string | number, unknown> | null | undefined)?.[node.key];
      case "call": {
        let callArgs = node.args;
        const refs = node.refs;
        if (refs.length === 1) {
          const v = await evaluate(refs[0]!);
          callArgs = fill(node, () => v);
        } else if (refs.length > 1) {
          const values = await Promise.all(refs.map(evaluate));
          callArgs = fill(node, (id) => values[refs.indexOf(id)]);
        }
        if (node.id === from && streams(ir, node.deployment, node.method)) return invoker.stream(node.deployment, node.method, callArgs, opts);
        return invoker.call(node.deployment, node.method, callArgs, opts);
      }
      case "instance":
        if (node.id === from && streams(ir, node.deployment, "__call__")) return invoker.stream(node.deployment, "__call__", [...args], opts);
        return invoker.call(node.deployment, "__call__", [...args], opts);
    }
  };
  return evaluate(from);
}
