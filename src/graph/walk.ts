import type { CallOptions, Invoker } from "../api/invoker.ts";
import { selectInput, wholeInput } from "../api/input-node.ts";
import type { GraphIR, IRNode } from "./ir.ts";
import { isRef, mapTemplate, type NodeRef } from "./template.ts";

const AsyncGeneratorFunction = Object.getPrototypeOf(async function* () {}).constructor;
const ignore = () => {};

/** Whether a deployment's function (or method) is an async generator, whose result streams. */
function streams(ir: GraphIR, deployment: string, method: string | null): boolean {
  const d = ir.deployments.get(deployment)!;
  const fn = d.kind === "function" ? d.def.target : (d.def.target as { prototype?: Record<string, unknown> }).prototype?.[method ?? "__call__"];
  return fn instanceof AsyncGeneratorFunction;
}

/** Calls whose root streams, found once per node (the check reads the deployment's function). */
const streaming = new WeakMap<IRNode, boolean>();

function rootStreams(ir: GraphIR, node: Extract<IRNode, { kind: "call" | "instance" }>): boolean {
  let s = streaming.get(node);
  if (s === undefined) streaming.set(node, (s = streams(ir, node.deployment, node.kind === "call" ? node.method : "__call__")));
  return s;
}

/**
 * A call's arguments with its refs' values in place. Most calls bind each
 * argument to a node or to a value holding none (`f.bind(a, b, 3)`): their
 * arguments are the list with the refs swapped, found once per node; others
 * are copied by mapTemplate.
 */
const flatArgs = new WeakMap<IRNode, boolean>();

function fill(node: Extract<IRNode, { kind: "call" }>, value: (id: number) => unknown): unknown[] {
  let flat = flatArgs.get(node);
  if (flat === undefined) flatArgs.set(node, (flat = node.args.every((a) => isRefObject(a) || !holdsRef(a))));
  if (!flat) return mapTemplate(node.args, isRef, (r: NodeRef) => value(r.id)) as unknown[];
  const out = new Array<unknown>(node.args.length);
  for (let i = 0; i < out.length; i++) {
    const a = node.args[i];
    out[i] = isRefObject(a) ? value(a.id) : a;
  }
  return out;
}

function isRefObject(v: unknown): v is NodeRef {
  return typeof v === "object" && v !== null && isRef(v);
}

/** Whether a ref sits anywhere inside `v`. */
function holdsRef(v: unknown): boolean {
  let found = false;
  mapTemplate(v, isRef, (r: NodeRef) => ((found = true), r));
  return found;
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
        if (node.id === from && rootStreams(ir, node)) return invoker.stream(node.deployment, node.method, callArgs, opts);
        return invoker.call(node.deployment, node.method, callArgs, opts);
      }
      case "instance":
        if (node.id === from && rootStreams(ir, node)) return invoker.stream(node.deployment, "__call__", [...args], opts);
        return invoker.call(node.deployment, "__call__", [...args], opts);
    }
  };
  return evaluate(from);
}
