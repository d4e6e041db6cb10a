import { GraphRef, HandleRef, NodeRef } from "./template.ts";
import type { GraphIR } from "./ir.ts";

/**
 * A stable text for anything a replica rebuilds: the graph's structure, each
 * deployment's identity and its init args. A random init arg changes it, which is how a
 * replica knows its rebuilt graph is not the one the server planned.
 * Functions do not count; the module file's content hash (plan-app.ts)
 * covers code changes.
 */
function describe(v: unknown, seen: Set<object>, depth: number): string {
  if (v === undefined) return "u";
  if (v === null || typeof v === "boolean" || typeof v === "number") return String(v);
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "bigint") return `${v}n`;
  if (typeof v === "symbol") return v.toString();
  // Functions do not count: their source text and even their inferred names
  // differ between transpilers (Bun's, a test runner's), and code changes are
  // caught by the module file's hash instead (plan-app.ts).
  if (typeof v === "function") return "fn";
  if (v instanceof NodeRef) return `#${v.id}`;
  if (v instanceof HandleRef) return `handle(${v.deployment})`;
  if (v instanceof GraphRef) return `graph(#${v.root})`;
  if (depth > 8 || seen.has(v as object)) return "…";
  seen.add(v as object);
  try {
    if (ArrayBuffer.isView(v)) return `${v.constructor.name}(${Bun.hash(new Uint8Array(v.buffer, v.byteOffset, v.byteLength)).toString(36)})`;
    if (v instanceof ArrayBuffer) return `ab(${Bun.hash(v).toString(36)})`;
    if (v instanceof Date) return `date(${v.getTime()})`;
    if (Array.isArray(v)) return `[${v.map((x) => describe(x, seen, depth + 1)).join(",")}]`;
    if (v instanceof Map) return `map{${[...v].map(([k, x]) => `${describe(k, seen, depth + 1)}:${describe(x, seen, depth + 1)}`).join(",")}}`;
    if (v instanceof Set) return `set{${[...v].map((x) => describe(x, seen, depth + 1)).join(",")}}`;
    const name = Object.getPrototypeOf(v)?.constructor?.name ?? "";
    const body = Object.entries(v as object).map(([k, x]) => `${k}:${describe(x, seen, depth + 1)}`);
    return `${name}{${body.join(",")}}`;
  } finally {
    seen.delete(v as object);
  }
}

export function graphHash(ir: Omit<GraphIR, "hash">): string {
  const parts: string[] = [];
  for (const d of ir.deployments.values()) {
    parts.push(`${d.name}|${d.kind}|${describe(d.def.target, new Set(), 0)}|${describe(d.initArgs, new Set(), 0)}`);
  }
  for (const n of ir.nodes) parts.push(describe(n, new Set(), 0));
  parts.push(`root:${ir.root}`);
  return Bun.hash(parts.join("\n")).toString(16).padStart(16, "0");
}
