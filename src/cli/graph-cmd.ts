import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { ServeError } from "../error.ts";
import { describeGraph } from "../graph/describe.ts";
import { GRAPH_FORMATS, graphText, type GraphFormat } from "../graph/graph-text.ts";
import { loadGraph } from "../runtime/load-graph.ts";
import { parse, UsageError } from "./args.ts";

const USAGE = `serve-bin graph <graph.ts[:export]> [--format ${GRAPH_FORMATS.join("|")}]`;

/** `serve-bin graph`: prints the bound graph (deployments, calls, the ingress first) as Mermaid or DOT. */
export async function graphCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { format: { type: "string", short: "f" } }, USAGE);
  if (positionals.length !== 1) throw new UsageError(`graph takes one graph module\nusage: ${USAGE}`);
  const format = (values.format ?? "mermaid") as GraphFormat;
  if (!GRAPH_FORMATS.includes(format)) throw new UsageError(`--format takes ${GRAPH_FORMATS.join(" or ")}, not "${values.format}"\nusage: ${USAGE}`);
  const target = positionals[0]!;
  const m = /^(.*?)(?::([A-Za-z_$][\w$]*))?$/.exec(target)!;
  if (!/\.(ts|tsx|mts|js|mjs|jsx)$/.test(m[1]!)) throw new UsageError(`${m[1]} is not a graph module (.ts, .js)\nusage: ${USAGE}`);
  if (!existsSync(m[1]!)) throw new UsageError(`no file at ${m[1]}; give the graph module to draw\nusage: ${USAGE}`);
  try {
    const graph = await loadGraph(resolve(m[1]!), m[2] ?? "default");
    process.stdout.write(graphText(describeGraph(graph), format));
  } catch (e) {
    if (e instanceof ServeError) throw new UsageError(`${target}: ${e.message}`);
    throw e;
  }
  return 0;
}
