import { ServeError } from "../error.ts";
import type { DeploymentOptions } from "../config/schema.ts";
import { checkDeploymentOptions } from "./options.ts";
import { ClassNode, classNodeProxy, FunctionNode, type DAGNode, type MethodBinder } from "./nodes.ts";

type AnyFunction = (...args: any[]) => any;
type AnyClass = abstract new (...args: any[]) => any;

/** Frozen plain data the engine reads: what `deployment()` and `.options()` build. */
export interface DeploymentDef {
  readonly name: string;
  readonly kind: "function" | "class";
  readonly target: AnyFunction | AnyClass;
  readonly options: Readonly<DeploymentOptions>;
  /** Its init args may hold input-dependent nodes (DAGDriver only). */
  readonly acceptsGraphs: boolean;
}

/** An argument of `bind`: a value, or any node producing one. */
export type Bindable<T> = T | DAGNode<any> | (T extends object ? { [K in keyof T]: Bindable<T[K]> } : never);
type BindArgs<P extends unknown[]> = { [K in keyof P]: Bindable<P[K]> };

type Methods<T> = {
  [K in keyof T as T[K] extends AnyFunction ? K : never]: T[K] extends (...a: infer _A) => infer R
    ? MethodBinder<Awaited<R> extends AsyncGenerator<infer Y> ? Y : Awaited<R>>
    : never;
};

/** A bound class: `node.method.bind(...)` for each of its methods. */
export type BoundClass<T> = ClassNode<T> & Methods<T>;

export type BoundNode<T> = T extends AnyClass ? BoundClass<InstanceType<T>> : T extends AnyFunction ? FunctionNode<Awaited<ReturnType<T>>> : never;
type BindParams<T> = T extends abstract new (...args: infer P) => any ? P : T extends (...args: infer P) => any ? P : never;

/**
 * A function or class made servable. `bind(...)` gives a graph node.
 * @example
 * const Model = deployment(class Model { constructor(private w: number) {} forward(x: string) { return x; } });
 * const m1 = Model.bind(1);
 */
export class Deployment<T extends AnyFunction | AnyClass = AnyFunction | AnyClass> {
  constructor(readonly def: DeploymentDef) {
    Object.freeze(this);
  }

  get name(): string {
    return this.def.name;
  }

  /** A new Deployment with these options merged over the current ones. */
  options(options: DeploymentOptions): Deployment<T> {
    // Spreading null or a list would read as "no options": check what was given first.
    if (typeof options !== "object" || options === null || Array.isArray(options)) checkDeploymentOptions(options, this.def.name);
    const merged = checkDeploymentOptions({ ...this.def.options, ...options }, this.def.name);
    return new Deployment<T>(Object.freeze({ ...this.def, name: merged.name ?? this.def.name, options: merged }));
  }

  /** A node: a function call with `args`, or a class instance built from `args`. */
  bind(...args: BindArgs<BindParams<T>>): BoundNode<T> {
    if (this.def.kind === "function") return new FunctionNode(this.def, Object.freeze([...args])) as BoundNode<T>;
    return classNodeProxy(new ClassNode(this.def, Object.freeze([...args]))) as unknown as BoundNode<T>;
  }
}

function isClass(fn: Function): boolean {
  return /^class[\s{]/.test(Function.prototype.toString.call(fn));
}

/**
 * Turns a function or a class into a deployment. Named after it unless
 * `options.name` says otherwise.
 * @example
 * export const preprocessor = deployment(async function preprocessor(x: string) { return parseInt(x); });
 */
export function deployment<T extends AnyFunction | AnyClass>(target: T, options: DeploymentOptions = {}): Deployment<T> {
  if (typeof target !== "function") {
    throw new ServeError("build", `deployment() takes a function or a class, not ${target === null ? "null" : typeof target}`);
  }
  const kind = isClass(target) ? "class" : "function";
  const fallback = target.name || (kind === "class" ? "Deployment" : "function");
  // `options` may be anything from plain JavaScript (null, a list): the check says what is wrong with it.
  const named = typeof options === "object" && options !== null ? (options as DeploymentOptions).name : undefined;
  const checked = checkDeploymentOptions(options, named ?? fallback);
  return new Deployment<T>(
    Object.freeze({ name: checked.name ?? fallback, kind, target, options: checked, acceptsGraphs: false }),
  );
}

/**
 * For DAGDriver: a class deployment whose init args may be graphs. Its
 * options are serve-bin's own constants, so they are not run through the
 * schema here (that would build it in every process that loads the API);
 * what a user adds with `.options()` is checked, merged with them.
 */
export function graphAcceptingDeployment<T extends AnyClass>(target: T, options: DeploymentOptions & { name: string }): Deployment<T> {
  return new Deployment<T>(Object.freeze({ name: options.name, kind: "class", target, options: Object.freeze({ ...options }), acceptsGraphs: true }));
}
