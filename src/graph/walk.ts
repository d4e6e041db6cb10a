import type { CallOptions, Invoker } from "../api/invoker.ts";
import { selectInput, wholeInput } from "../api/input-node.ts";
import type { GraphIR, IRNode } from "./ir.ts";
import { isRef, mapTemplate, type NodeRef } from "./template.ts";

const AsyncGeneratorFunction = Object.getPrototypeOf(async function* () {}).constructor;

/** Whether a deployment's function (or method) is an async generator, whose result streams. */
function streams(ir: GraphIR, deployment: string, method: string | null): boolean {
  const d = ir.deployments.get(deployment)!;
  const fn = d.kind === "function" ? d.def.target : (d.def.target as { prototype?: Record<string, unknown> }).prototype?.[method ?? "__call__"];
  return fn instanceof AsyncGeneratorFunction;
}

/**
 * Evaluates the graph under `from` for one request. Each node is computed at
 * most once (a promise per node), and a node starts as soon as its inputs are
 * ready, so independent branches run concurrently. Local execution and
 * serving differ only in the invoker. When the node evaluated is an async
 * generator, its chunks stream: the result is an async iterable.
 */
export function walkGraph(ir: GraphIR, from: number, args: readonly unknown[], invoker: Invoker, opts: CallOptions): Promise<unknown> {
  const memo = new Map<number, Promise<unknown>>();
  const evaluate = (id: number): Promise<unknown> => {
    let p = memo.get(id);
    if (!p) {
      p = evaluateNode(ir.nodes[id]!);
      p.catch(() => {});
      memo.set(id, p);
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
        if (node.refs.length > 0) {
          const values = new Map<number, unknown>();
          await Promise.all(node.refs.map(async (r) => values.set(r, await evaluate(r))));
          callArgs = mapTemplate(node.args, isRef, (r: NodeRef) => values.get(r.id)) as unknown[];
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
