import { ServeError } from "../error.ts";
import type { GraphRunner } from "../api/dag-driver.ts";
import { createHandle } from "../api/handle.ts";
import type { Invoker } from "../api/invoker.ts";
import { currentRequestContext, signalToken } from "../api/request-context.ts";
import type { GraphIR, IRDeployment } from "./ir.ts";
import { CycleError, GraphRef, HandleRef, mapTemplate } from "./template.ts";
import { walkGraph } from "./walk.ts";

/** A deployment made callable: what a replica (or local execution) runs. */
export interface Callable {
  readonly deployment: IRDeployment;
  /** The class instance (null for a function deployment). */
  readonly instance: Record<string, unknown> | null;
  /** The function to call for `method` (null: the function, or `__call__`). */
  resolve(method: string | null): (...args: unknown[]) => unknown;
}

const isInitRef = (v: object) => v instanceof HandleRef || v instanceof GraphRef;

/** Init args with handles and graph runners in place of the bound nodes. */
export function resolveInitArgs(ir: GraphIR, d: IRDeployment, invoker: Invoker): unknown[] {
  return d.initArgs.map((arg) => {
    try {
      return mapTemplate(arg, isInitRef, swap);
    } catch (e) {
      // The builder keeps a cyclic init arg only when it holds no node, so there is nothing to swap.
      if (e instanceof CycleError) return arg;
      throw e;
    }
  });
  function swap(ref: HandleRef | GraphRef): unknown {
    if (ref instanceof HandleRef) {
      const target = ir.deployments.get(ref.deployment)!;
      return createHandle({ name: target.name, kind: target.kind, methods: target.methods }, invoker);
    }
    const runner: GraphRunner = {
      run: (args) => {
        const ctx = currentRequestContext();
        return walkGraph(ir, ref.root, args, invoker, { requestId: ctx?.requestId, cancel: ctx?.cancel ?? (ctx ? signalToken(ctx.signal) : undefined) });
      },
    };
    return runner;
  }
}

/**
 * Builds deployment `name` of the graph: calls the class's constructor with
 * its init args (nodes become handles through `invoker`). Then, when a
 * userConfig is set and the class has `reconfigure`, applies it.
 */
export async function instantiate(ir: GraphIR, name: string, invoker: Invoker, userConfig?: unknown): Promise<Callable> {
  const d = ir.deployments.get(name);
  if (!d) throw new ServeError("not_found", `the graph has no deployment "${name}"; it has ${[...ir.deployments.keys()].join(", ")}`);
  if (d.kind === "function") {
    const fn = d.def.target as (...a: unknown[]) => unknown;
    return { deployment: d, instance: null, resolve: () => fn };
  }
  const Cls = d.def.target as new (...a: unknown[]) => Record<string, unknown>;
  let instance: Record<string, unknown>;
  try {
    instance = new Cls(...resolveInitArgs(ir, d, invoker));
  } catch (e) {
    throw ServeError.fromUser(e, name);
  }
  if (userConfig !== undefined && typeof instance.reconfigure === "function") {
    try {
      await (instance.reconfigure as (c: unknown) => unknown)(userConfig);
    } catch (e) {
      throw ServeError.fromUser(e, name);
    }
  }
  const resolve = (method: string | null) => {
    const m = method ?? "__call__";
    const fn = instance[m];
    if (typeof fn !== "function") {
      throw new ServeError("not_found", `${name} has no method "${m}"; its methods are: ${d.methods.join(", ")}`, { deployment: name });
    }
    return fn.bind(instance) as (...a: unknown[]) => unknown;
  };
  return { deployment: d, instance, resolve };
}

/**
 * Runs the class's `warmUp()`, if it has one: once, after the constructor and
 * `reconfigure()`, before the deployment takes its first call (served: before
 * the replica reports ready). A throw is the deployment's failure to start.
 */
export async function warmUp(callable: Callable, name: string): Promise<void> {
  const fn = callable.instance?.warmUp;
  if (typeof fn !== "function") return;
  try {
    await (fn as () => unknown).call(callable.instance);
  } catch (e) {
    throw ServeError.fromUser(e, name);
  }
}
