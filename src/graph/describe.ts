import type { ServableGraph } from "./application.ts";
import type { GraphIR } from "./ir.ts";
import { GraphRef, HandleRef, mapTemplate } from "./template.ts";

/** One deployment as drawn. */
export interface GraphViewNode {
  name: string;
  kind: "function" | "class";
  ingress: boolean;
}

/**
 * An edge between deployments. `call`: `from` runs a graph that calls `to`
 * (label: the method; none for a function or `__call__`). `handle`: `from`
 * holds a handle to `to` and calls it from its own code. `data`: `from`'s
 * result is an argument of a call to `to`.
 */
export interface GraphViewEdge {
  from: string;
  to: string;
  kind: "call" | "handle" | "data";
  label?: string;
}

/** The bound graph as deployments and edges: what `serve-bin graph` prints and the dashboard draws. */
export interface GraphView {
  ingress: string;
  /** The ingress first, then in call order (breadth first), then any left. */
  nodes: GraphViewNode[];
  edges: GraphViewEdge[];
}

/** Call nodes (ids) reachable from `root` through arguments and selections. */
function reachable(ir: GraphIR, root: number): number[] {
  const seen = new Set<number>();
  const visit = (id: number) => {
    if (seen.has(id)) return;
    seen.add(id);
    const n = ir.nodes[id]!;
    if (n.kind === "call") n.refs.forEach(visit);
    if (n.kind === "select") visit(n.of);
  };
  visit(root);
  return [...seen].sort((a, b) => a - b);
}

/** The deployment whose result node `id` carries, looking through selections (`out[0]`, `out.key`). */
function producer(ir: GraphIR, id: number): string | null {
  const n = ir.nodes[id]!;
  if (n.kind === "call" || n.kind === "instance") return n.deployment;
  if (n.kind === "select" && !n.fromInput) return producer(ir, n.of);
  return null;
}

/**
 * Deployments as nodes, calls as edges, the ingress first. Pure: reads the
 * IR only, so the CLI, the admin API and tests see the same graph.
 *
 * @example
 * const view = describeGraph(servable(root));
 * view.edges; // [{ from: "DAGDriver", to: "preprocessor", kind: "call" }, …]
 */
export function describeGraph(graph: ServableGraph): GraphView {
  const { ir, ingress } = graph;
  const edges: GraphViewEdge[] = [];
  const seen = new Set<string>();
  const add = (e: GraphViewEdge) => {
    const key = JSON.stringify([e.from, e.to, e.kind, e.label ?? ""]);
    if (seen.has(key) || e.from === e.to) return;
    seen.add(key);
    edges.push(e);
  };
  for (const d of ir.deployments.values()) {
    mapTemplate(
      d.initArgs,
      (v) => v instanceof GraphRef || v instanceof HandleRef,
      (ref: GraphRef | HandleRef) => {
        if (ref instanceof HandleRef) return add({ from: d.name, to: ref.deployment, kind: "handle" });
        for (const id of reachable(ir, ref.root)) {
          const n = ir.nodes[id]!;
          if (n.kind === "call") add({ from: d.name, to: n.deployment, kind: "call", ...(n.method && n.method !== "__call__" ? { label: n.method } : {}) });
          if (n.kind === "instance") add({ from: d.name, to: n.deployment, kind: "call" });
        }
      },
    );
  }
  for (const n of ir.nodes) {
    if (n.kind !== "call") continue;
    for (const r of n.refs) {
      const from = producer(ir, r);
      if (from) add({ from, to: n.deployment, kind: "data" });
    }
  }
  // Breadth first from the ingress over call and handle edges, so the drawing reads from where requests enter.
  const order = [ingress];
  for (let i = 0; i < order.length; i++) {
    for (const e of edges) if (e.from === order[i] && e.kind !== "data" && !order.includes(e.to)) order.push(e.to);
  }
  for (const name of ir.deployments.keys()) if (!order.includes(name)) order.push(name);
  const nodes = order.map((name) => ({ name, kind: ir.deployments.get(name)!.kind, ingress: name === ingress }));
  const rank = { call: 0, handle: 1, data: 2 };
  edges.sort((a, b) => rank[a.kind] - rank[b.kind] || order.indexOf(a.from) - order.indexOf(b.from));
  return { ingress, nodes, edges };
}
