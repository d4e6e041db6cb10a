import type { GraphView } from "./describe.ts";

/** Formats `serve-bin graph` can print. */
export const GRAPH_FORMATS = ["mermaid", "dot"] as const;
export type GraphFormat = (typeof GRAPH_FORMATS)[number];

const quote = (s: string) => `"${s.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`;

/**
 * The graph as Mermaid (a `flowchart LR`) or Graphviz DOT, for docs: solid
 * arrows for calls (labelled with the method), thick ones for handles,
 * dotted ones for a result passed on as an argument.
 *
 * @example
 * console.log(graphText(describeGraph(servable(root)), "mermaid"));
 */
export function graphText(view: GraphView, format: GraphFormat): string {
  return format === "dot" ? dot(view) : mermaid(view);
}

function mermaid(view: GraphView): string {
  // Mermaid ids are positional; the names go in the labels, so any name is safe.
  const id = new Map(view.nodes.map((n, i) => [n.name, `n${i}`]));
  const lines = ["flowchart LR"];
  for (const n of view.nodes) lines.push(`  ${id.get(n.name)}${n.ingress ? `[["${n.name} (ingress)"]]` : n.kind === "function" ? `(["${n.name}"])` : `["${n.name}"]`}`);
  for (const e of view.edges) {
    const arrow = e.kind === "data" ? "-.->" : e.kind === "handle" ? "==>" : "-->";
    const label = e.kind === "handle" ? "handle" : e.label;
    lines.push(`  ${id.get(e.from)} ${arrow}${label ? `|${label}|` : ""} ${id.get(e.to)}`);
  }
  return `${lines.join("\n")}\n`;
}

function dot(view: GraphView): string {
  const lines = ["digraph serve_bin {", "  rankdir=LR;", "  node [shape=box, fontname=Helvetica];"];
  for (const n of view.nodes) {
    const attrs = [`label=${quote(n.ingress ? `${n.name}\n(ingress)` : n.name)}`];
    if (n.ingress) attrs.push("style=bold");
    if (n.kind === "function") attrs.push("style=rounded");
    lines.push(`  ${quote(n.name)} [${attrs.join(", ")}];`);
  }
  for (const e of view.edges) {
    const attrs: string[] = [];
    if (e.kind === "data") attrs.push("style=dashed");
    if (e.kind === "handle") attrs.push("style=bold", 'label="handle"');
    else if (e.label) attrs.push(`label=${quote(e.label)}`);
    lines.push(`  ${quote(e.from)} -> ${quote(e.to)}${attrs.length ? ` [${attrs.join(", ")}]` : ""};`);
  }
  lines.push("}");
  return `${lines.join("\n")}\n`;
}
