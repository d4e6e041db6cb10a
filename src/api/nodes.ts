import { ServeError } from "../error.ts";
import { callerFile } from "./call-site.ts";
import type { DeploymentDef } from "./deployment.ts";

/**
 * Bound nodes: frozen plain data that the graph builder reads. A node is the
 * only graph representation there is; InputNode and DAGDriver are sugar over
 * it. Nodes are deliberately not thenable: `then` throws, so awaiting a node
 * by mistake fails loudly instead of resolving to the node itself.
 */
export type NodeKind = "input" | "select" | "function" | "class" | "method";

const NODE = Symbol.for("serve-bin.node");

type Executor = (node: DAGNode<unknown>, args: unknown[]) => Promise<unknown>;
let executor: Executor | undefined;

/** The graph layer registers local execution here (api must not import graph). */
export function setLocalExecutor(fn: Executor): void {
  executor = fn;
}

export abstract class DAGNode<T = unknown> {
  abstract readonly kind: NodeKind;
  readonly [NODE] = true;
  /** The module where this node was bound; serve.run imports it in each replica. */
  readonly sourceFile: string | undefined = callerFile();

  /**
   * Runs the whole graph in this process, no subprocesses.
   * @example const out = await dag.execute("5", [1, 2], "sum");
   */
  async execute(...args: unknown[]): Promise<T> {
    // async: a graph that fails to build rejects, like any other failure of execute
    if (!executor) throw new ServeError("internal", "local execution is not loaded; import from \"serve-bin\"");
    return executor(this, args) as Promise<T>;
  }

  get then(): never {
    throw new ServeError(
      "build",
      `a ${this instanceof SelectNode ? "select" : this instanceof InputNodeBase ? "input" : this.kind} node is not awaitable: call \`await node.execute(...args)\` to run the graph, or serve it with \`serve-bin run\``,
    );
  }
}

export function isNode(value: unknown): value is DAGNode {
  return typeof value === "object" && value !== null && (value as Record<symbol, unknown>)[NODE] === true;
}

/** A call of a function deployment. */
export class FunctionNode<T = unknown> extends DAGNode<T> {
  readonly kind = "function";
  constructor(
    readonly deployment: DeploymentDef,
    readonly args: readonly unknown[],
  ) {
    super();
    Object.freeze(this);
  }
}

/** A call of one method of a class node. */
export class MethodNode<T = unknown> extends DAGNode<T> {
  readonly kind = "method";
  constructor(
    readonly instance: ClassNode<unknown>,
    readonly method: string,
    readonly args: readonly unknown[],
  ) {
    super();
    Object.freeze(this);
  }
}

/** A bound class: one instance per replica, built from `initArgs`. */
export class ClassNode<T = unknown> extends DAGNode<T> {
  readonly kind = "class";
  constructor(
    readonly deployment: DeploymentDef,
    readonly initArgs: readonly unknown[],
  ) {
    super();
  }
}

/** Where a SelectNode keeps what it selects from and its key: symbols, so that every string key stays free to select (`input.kind`, `input.key`). */
export const SELECT_OF = Symbol.for("serve-bin.select-of");
export const SELECT_KEY = Symbol.for("serve-bin.select-key");

/** `input[k]` / `input.key` / `input.get(k)`: part of the graph's input. */
export class SelectNode extends DAGNode<unknown> {
  readonly kind = "select";
  readonly [SELECT_OF]: InputNodeBase | SelectNode;
  readonly [SELECT_KEY]: string | number;
  constructor(of: InputNodeBase | SelectNode, key: string | number) {
    super();
    this[SELECT_OF] = of;
    this[SELECT_KEY] = key;
  }
}

export abstract class InputNodeBase extends DAGNode<unknown> {}

/** What a method binder does: `classNode.forward.bind(...)`. */
export interface MethodBinder<R> {
  bind(...args: unknown[]): MethodNode<R>;
}

export function methodNames(cls: Function): string[] {
  const names = new Set<string>();
  for (let p = cls.prototype; p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    for (const k of Object.getOwnPropertyNames(p)) {
      if (k === "constructor") continue;
      const d = Object.getOwnPropertyDescriptor(p, k);
      if (d && typeof d.value === "function") names.add(k);
    }
  }
  return [...names];
}

/**
 * Names that tools read from any object to sniff what it is, so they must not
 * throw: Bun's entry point reads `default.app` of the main module to decide
 * whether to serve it, which made `bun graph.ts` crash when the graph's
 * default export was a class node.
 */
const SNIFFED = new Set(["app"]);

/**
 * Wraps a ClassNode so that `node.someMethod.bind(...)` makes a MethodNode and
 * an unknown method fails at bind time with the list of methods it has.
 */
export function classNodeProxy<T>(node: ClassNode<T>): ClassNode<T> {
  const methods = methodNames(node.deployment.target as Function);
  return new Proxy(node, {
    get(target, prop, receiver) {
      if (typeof prop === "symbol" || prop in target) return Reflect.get(target, prop, receiver);
      if (!methods.includes(prop)) {
        if (SNIFFED.has(prop)) return undefined;
        throw new ServeError(
          "build",
          `${node.deployment.name} has no method "${prop}"; its methods are: ${methods.join(", ") || "(none)"}`,
          { deployment: node.deployment.name },
        );
      }
      const binder: MethodBinder<unknown> = { bind: (...args: unknown[]) => new MethodNode(receiver, prop, args) };
      return binder;
    },
  });
}
