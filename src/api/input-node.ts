import { InputNodeBase, SelectNode } from "./nodes.ts";

/**
 * The only string keys of an input node that are not selections. Everything
 * else — `kind`, `key`, `type`, `constructor` — selects that part of the
 * input, so a payload field never silently reads a member of the node.
 */
const MEMBERS = new Set(["get", "execute", "then"]);

/**
 * Selecting part of the input. `input[k]`, `input.key` and `input.get(k)` all
 * give a SelectNode; numeric-looking keys become numbers.
 */
function selectable<T extends InputNodeBase | SelectNode>(node: T): T & Record<string | number, SelectNode> {
  return new Proxy(node, {
    get(target, prop, receiver) {
      if (typeof prop === "symbol" || MEMBERS.has(prop)) return Reflect.get(target, prop, receiver);
      return selectable(new SelectNode(receiver, /^\d+$/.test(prop) ? Number(prop) : prop));
    },
  }) as T & Record<string | number, SelectNode>;
}

class InputNodeImpl extends InputNodeBase {
  readonly kind = "input";
  /** Same as `input[key]`. */
  get(key: string | number): SelectNode {
    return selectable(new SelectNode(this as InputNodeBase, key));
  }
  constructor() {
    super();
    return selectable(this);
  }
}

/**
 * The graph's runtime input. With one argument, `input[k]` is `arg[k]`; with
 * several positional arguments, `input[k]` is the k-th argument (Ray's rule).
 * At most one InputNode per graph.
 * @example
 * const input = new InputNode();
 * const dag = model.forward.bind(input[0]);
 */
export const InputNode = InputNodeImpl as unknown as {
  new (): InputNodeImpl & { readonly [key: string | number]: any };
};
export type InputNode = InputNodeImpl;

/** Reads a SelectNode's key from the request's positional arguments. */
export function selectInput(args: readonly unknown[], key: string | number): unknown {
  if (args.length === 1) return (args[0] as Record<string | number, unknown> | null | undefined)?.[key];
  return (args as unknown as Record<string | number, unknown>)[key];
}

/** The value of the InputNode itself: the one argument, or all of them. */
export function wholeInput(args: readonly unknown[]): unknown {
  return args.length === 1 ? args[0] : [...args];
}
