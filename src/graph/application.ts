import { ServeError } from "../error.ts";
import { DAGDriver } from "../api/dag-driver.ts";
import { jsonRequest } from "../api/adapters.ts";
import { ClassNode, isNode, type DAGNode } from "../api/nodes.ts";
import { buildGraph, hasFetch, type GraphIR } from "./ir.ts";

/** A graph ready to serve: its IR and which deployment is the ingress. */
export interface ServableGraph {
  readonly ir: GraphIR;
  readonly ingress: string;
}

const wrapped = new WeakMap<DAGNode, DAGNode>();

/**
 * The node that serves `node` over HTTP. An ingress (a DAGDriver, or a class
 * with `fetch`) serves itself; anything else is served as if bound in
 * `DAGDriver.bind(node, { httpAdapter: jsonRequest })`.
 */
export function ingressOf(node: unknown): DAGNode {
  if (!isNode(node)) {
    throw new ServeError("build", `expected a bound graph node (from .bind()), got ${node === null ? "null" : typeof node}; export the node your graph ends in`);
  }
  if (node instanceof ClassNode && (node.deployment.acceptsGraphs || hasFetch(node.deployment))) return node;
  let w = wrapped.get(node);
  if (!w) wrapped.set(node, (w = DAGDriver.bind(node, { httpAdapter: jsonRequest })));
  return w;
}

/** Builds the servable graph for an exported node. */
export function servable(node: unknown): ServableGraph {
  const root = ingressOf(node) as ClassNode;
  const ir = buildGraph(root);
  const rootNode = ir.nodes[ir.root]!;
  if (rootNode.kind !== "instance") throw new ServeError("internal", "the ingress is not a class node");
  return { ir, ingress: rootNode.deployment };
}
