import { ServeError } from "../error.ts";
import type { DeploymentDef } from "../api/deployment.ts";
import { ClassNode, FunctionNode, InputNodeBase, MethodNode, SelectNode, isNode, methodNames, type DAGNode, SELECT_KEY, SELECT_OF } from "../api/nodes.ts";
import { findUnencodable } from "../wire/codec.ts";
import { graphHash } from "./hash.ts";
import { CycleError, GraphRef, HandleRef, NodeRef, forEachNode, isRef, mapTemplate } from "./template.ts";

/** One graph representation: nodes in post-order, each call naming its deployment. */
export type IRNode =
  | { id: number; kind: "input" }
  | { id: number; kind: "select"; of: number; key: string | number; fromInput: boolean }
  | {
      id: number;
      kind: "call";
      deployment: string;
      method: string | null;
      args: unknown[];
      refs: number[];
      /** Each argument is a ref or holds none (`f.bind(a, b, 3)`): filled per request by swapping the refs in one pass. */
      flatArgs: boolean;
    }
  | { id: number; kind: "instance"; deployment: string };

export interface IRDeployment {
  readonly name: string;
  readonly def: DeploymentDef;
  readonly kind: "function" | "class";
  readonly methods: readonly string[];
  /** Class init args with HandleRef / GraphRef where nodes were bound. */
  readonly initArgs: readonly unknown[];
}

export interface GraphIR {
  readonly nodes: readonly IRNode[];
  readonly root: number;
  /** By unique name, in post-order of first appearance. */
  readonly deployments: ReadonlyMap<string, IRDeployment>;
  /** What a replica must rebuild identically: structure, code and init args. */
  readonly hash: string;
}

const built = new WeakMap<DAGNode, GraphIR>();

/**
 * The bound graph under `root` as IR. Pure and memoised by node identity.
 * Walks post-order depth-first, arguments left to right; names deployments
 * `Model`, `Model_1`, … in that order.
 */
export function buildGraph(root: DAGNode): GraphIR {
  let ir = built.get(root);
  if (!ir) {
    ir = new Builder().build(root);
    built.set(root, ir);
  }
  return ir;
}

/** A node as error messages name it: `f`, `Model.forward`, `Model`. */
function label(node: DAGNode): string {
  if (node instanceof FunctionNode) return node.deployment.name;
  if (node instanceof MethodNode) return `${node.instance.deployment.name}.${node.method}`;
  if (node instanceof ClassNode) return node.deployment.name;
  return node instanceof SelectNode ? "an input selection" : "the InputNode";
}

function where(def: DeploymentDef): string {
  return `${def.kind === "class" ? "class" : "function"} deployment ${def.name}`;
}

class Builder {
  readonly nodes: IRNode[] = [];
  readonly ids = new Map<DAGNode, number>();
  readonly inputDependent = new Set<number>();
  readonly deployments = new Map<string, IRDeployment>();
  /** A class node's or a function deployment's unique name. */
  readonly names = new Map<ClassNode | DeploymentDef, string>();
  readonly visiting = new Set<DAGNode>();
  input: DAGNode | undefined;

  build(root: DAGNode): GraphIR {
    const rootId = this.visit(root, true);
    this.checkRoutePrefixes(root);
    const ir = { nodes: this.nodes, root: rootId, deployments: this.deployments };
    return Object.freeze({ ...ir, hash: graphHash(ir) });
  }

  visit(node: DAGNode, asValue: boolean): number {
    const known = this.ids.get(node);
    if (known !== undefined) return known;
    if (this.visiting.has(node)) {
      throw new ServeError("build", `the graph has a cycle through ${label(node)}; a node cannot depend on its own output, so bind acyclic values`);
    }
    this.visiting.add(node);
    try {
      const id = this.add(node, asValue);
      this.ids.set(node, id);
      return id;
    } finally {
      this.visiting.delete(node);
    }
  }

  push(node: IRNode extends infer N ? (N extends IRNode ? Omit<N, "id"> : never) : never, dependsOnInput: boolean): number {
    const id = this.nodes.length;
    this.nodes.push({ ...node, id } as IRNode);
    if (dependsOnInput) this.inputDependent.add(id);
    return id;
  }

  add(node: DAGNode, asValue: boolean): number {
    if (node instanceof InputNodeBase) {
      if (this.input && this.input !== node) {
        throw new ServeError("build", "the graph uses two InputNodes; create one `new InputNode()` and select parts of it with input[0], input.key");
      }
      this.input = node;
      return this.push({ kind: "input" }, true);
    }
    if (node instanceof SelectNode) {
      const from = node[SELECT_OF];
      const of = this.visit(from, true);
      return this.push({ kind: "select", of, key: node[SELECT_KEY], fromInput: from instanceof InputNodeBase }, true);
    }
    if (node instanceof FunctionNode) {
      const { args, refs, flatArgs } = this.callArgs(node.args, node.deployment.name, node.deployment.name);
      const name = this.nameFor(node.deployment, node.deployment, []);
      return this.push({ kind: "call", deployment: name, method: null, args, refs, flatArgs }, refs.some((r) => this.inputDependent.has(r)));
    }
    if (node instanceof MethodNode) {
      const owner = node.instance;
      this.visit(owner, false);
      const name = this.names.get(owner)!;
      const { args, refs, flatArgs } = this.callArgs(node.args, name, `${name}.${node.method}`);
      return this.push({ kind: "call", deployment: name, method: node.method, args, refs, flatArgs }, refs.some((r) => this.inputDependent.has(r)));
    }
    if (node instanceof ClassNode) {
      const initArgs = node.initArgs.map((a, i) => this.initArg(a, node.deployment, i));
      const name = this.nameFor(node, node.deployment, initArgs);
      if (asValue && !node.deployment.acceptsGraphs && !methodNames(node.deployment.target as Function).includes("__call__") && !hasFetch(node.deployment)) {
        throw new ServeError(
          "build",
          `${name} is used as a value but has no __call__; bind one of its methods instead (e.g. ${name}.bind(...).${methodNames(node.deployment.target as Function)[0] ?? "method"}.bind(...))`,
          { deployment: name },
        );
      }
      return this.push({ kind: "instance", deployment: name }, false);
    }
    throw new ServeError("internal", `unknown node kind ${(node as DAGNode).kind}`);
  }

  /** Arguments of a call: nodes become refs, constants must be encodable. */
  callArgs(args: readonly unknown[], deployment: string, callee: string): { args: unknown[]; refs: number[]; flatArgs: boolean } {
    const refs: number[] = [];
    let flatArgs = true;
    const out = args.map((a, i) => {
      forEachNode(a, (n) => {
        if (n !== a) flatArgs = false; // a node inside a value: the value is copied per request
        if (n instanceof ClassNode) {
          throw new ServeError("build", `argument ${i} of a call to ${callee} is a class node; pass it as an init argument of a class (it becomes a handle) or bind one of its methods`, {
            deployment,
          });
        }
        refs.push(this.visit(n, true));
      });
      const template = this.template(a, deployment, `argument ${i} of a call to ${callee}`);
      const probe = mapTemplate(template, isRef, () => null);
      const bad = findUnencodable(probe, `args[${i}]`);
      if (bad) {
        throw new ServeError("encode", `the constant ${bad.path} of a call to ${callee} is ${bad.reason}, which cannot travel between processes; pass plain data (objects, arrays, strings, numbers, typed arrays, Map, Set, Date)`, {
          deployment,
        });
      }
      return template;
    });
    return { args: out, refs: [...new Set(refs)], flatArgs };
  }

  template(a: unknown, deployment: string, what: string): unknown {
    try {
      return mapTemplate(a, isNode, (n: DAGNode) => new NodeRef(this.ids.get(n)!));
    } catch (e) {
      if (e instanceof CycleError) throw new ServeError("build", `${what} refers to itself (a cycle); bind acyclic values`, { deployment });
      throw e;
    }
  }

  /** A class's init arg: nodes become handles (or graphs, for DAGDriver). */
  initArg(a: unknown, def: DeploymentDef, i: number): unknown {
    let nodes = 0;
    forEachNode(a, (n) => {
      nodes++;
      this.visit(n, def.acceptsGraphs);
    });
    // Init args never cross the wire, so a value without nodes is kept as is, even a cyclic one.
    if (nodes === 0) return a;
    const t = this.template(a, def.name, `init argument ${i} of ${where(def)}`);
    return mapTemplate(t, isRef, (r: NodeRef) => {
      const node = this.nodes[r.id]!;
      if (def.acceptsGraphs) return new GraphRef(r.id);
      if (this.inputDependent.has(r.id)) {
        throw new ServeError(
          "build",
          `init argument ${i} of ${where(def)} depends on the InputNode; init args are fixed at start and input arrives per request, so pass it to a method: ${def.name}.bind().method.bind(input)`,
          { deployment: def.name },
        );
      }
      if (node.kind === "call" && this.defOf(node.deployment).kind === "class") {
        throw new ServeError("build", `init argument ${i} of ${where(def)} is a method call; pass the class node itself and call the method through the handle`, {
          deployment: def.name,
        });
      }
      if (node.kind !== "instance" && node.kind !== "call") throw new ServeError("internal", `unexpected ${node.kind} in init args`);
      return new HandleRef(node.deployment);
    });
  }

  defOf(name: string): DeploymentDef {
    return this.deployments.get(name)!.def;
  }

  nameFor(key: ClassNode | DeploymentDef, def: DeploymentDef, initArgs: unknown[]): string {
    const known = this.names.get(key);
    if (known) return known;
    let name = def.name;
    for (let n = 1; this.deployments.has(name); n++) name = `${def.name}_${n}`;
    this.names.set(key, name);
    const methods = def.kind === "class" ? methodNames(def.target as Function) : [];
    this.deployments.set(name, Object.freeze({ name, def, kind: def.kind, methods, initArgs: Object.freeze(initArgs) }));
    return name;
  }

  checkRoutePrefixes(root: DAGNode): void {
    const ingress = root instanceof ClassNode ? this.names.get(root) : undefined;
    for (const d of this.deployments.values()) {
      if (d.def.options.routePrefix !== undefined && d.name !== ingress) {
        throw new ServeError("build", `${d.name} sets routePrefix but is not the ingress; set routePrefix only on the DAGDriver (or the class with fetch or __call__) at the graph's root`, {
          deployment: d.name,
        });
      }
    }
  }
}

export function hasFetch(def: DeploymentDef): boolean {
  return def.kind === "class" && methodNames(def.target as Function).includes("fetch");
}
