import { isNode, type DAGNode } from "../api/nodes.ts";

/**
 * Arguments as bound: values in which nodes may sit anywhere inside arrays,
 * plain objects and Maps. The IR keeps them as templates whose nodes are
 * replaced by refs, and fills the refs in per request.
 */
export class NodeRef {
  constructor(readonly id: number) {}
}

/** A node in a class's init args that becomes a handle to a deployment. */
export class HandleRef {
  constructor(readonly deployment: string) {}
}

/** A node in a DAGDriver's init args: a graph the driver runs per request. */
export class GraphRef {
  constructor(readonly root: number) {}
}

function isPlainObject(v: object): boolean {
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** Calls `visit` for every node inside `value`, in order. `seen` guards against cyclic containers. */
export function forEachNode(value: unknown, visit: (n: DAGNode) => void, seen = new Set<object>()): void {
  if (typeof value !== "object" || value === null) return;
  if (isNode(value)) return visit(value);
  if (seen.has(value)) return;
  seen.add(value);
  if (Array.isArray(value)) for (const v of value) forEachNode(v, visit, seen);
  else if (value instanceof Map) for (const [k, v] of value) (forEachNode(k, visit, seen), forEachNode(v, visit, seen));
  else if (isPlainObject(value)) for (const v of Object.values(value)) forEachNode(v, visit, seen);
  seen.delete(value);
}

/** A copy of `value` with every node (or ref) replaced by `swap(it)`; untouched subtrees are shared. */
export function mapTemplate(value: unknown, isLeaf: (v: object) => boolean, swap: (leaf: any) => unknown, path = new Set<object>()): unknown {
  if (typeof value !== "object" || value === null) return value;
  if (isLeaf(value)) return swap(value);
  if (path.has(value)) throw new CycleError();
  path.add(value);
  try {
    return mapChildren(value, (v) => mapTemplate(v, isLeaf, swap, path));
  } finally {
    path.delete(value);
  }
}

/** A value refers to itself; the graph builder reports where. */
export class CycleError extends Error {}

function mapChildren(value: object, map: (v: unknown) => unknown): unknown {
  if (Array.isArray(value)) {
    let changed = false;
    const out = value.map((v) => {
      const m = map(v);
      if (m !== v) changed = true;
      return m;
    });
    return changed ? out : value;
  }
  if (value instanceof Map) {
    return new Map([...value].map(([k, v]) => [map(k), map(v)]));
  }
  if (isPlainObject(value)) {
    let changed = false;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] = map(v);
      if (out[k] !== v) changed = true;
    }
    return changed ? out : value;
  }
  return value;
}

export const isRef = (v: object): v is NodeRef => v instanceof NodeRef;
