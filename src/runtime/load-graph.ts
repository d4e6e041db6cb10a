import { pathToFileURL } from "node:url";
import { ServeError } from "../error.ts";
import { servable, type ServableGraph } from "../graph/application.ts";

/**
 * Imports a graph module and builds the graph its export ends in. `version`
 * (the file's hash) makes a changed file import afresh, not from the cache.
 */
export async function loadGraph(modulePath: string, exportName: string, version?: string): Promise<ServableGraph & { node: unknown }> {
  let mod: Record<string, unknown>;
  try {
    const url = pathToFileURL(modulePath).href;
    mod = await import(version ? `${url}?v=${version}` : url);
  } catch (e) {
    const err = e as Error;
    throw new ServeError("build", `cannot import ${modulePath}: ${err.message}`, { causeName: err.name, causeStack: err.stack });
  }
  if (!(exportName in mod)) {
    const names = Object.keys(mod).filter((k) => k !== "__esModule");
    throw new ServeError("build", `${modulePath} has no export "${exportName}"; it exports: ${names.join(", ") || "(nothing)"}. Write graph.ts:<export>`);
  }
  const node = mod[exportName];
  return { node, ...servable(node) };
}
