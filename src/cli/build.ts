import { writeFileSync } from "node:fs";
import { basename, dirname, resolve } from "node:path";
import { ServeError } from "../error.ts";
import { parseConfig, type ServeConfig } from "../config/schema.ts";
import { toYAML } from "../config/yaml.ts";
import { planApp } from "../runtime/plan-app.ts";
import { relativeImport } from "../http/serve-api.ts";
import { parse, UsageError } from "./args.ts";

const USAGE = "serve-bin build <graph.ts[:export]>... [-o app.yaml]";

/** Application name for a target: `default` alone; else the export, or the file's stem for a default export. */
function appName(target: string, single: boolean): string {
  if (single) return "default";
  const m = /^(.*?)(?::([A-Za-z_$][\w$]*))?$/.exec(target)!;
  return m[2] && m[2] !== "default" ? m[2] : basename(m[1]!).replace(/\.[^.]+$/, "");
}

/** `serve-bin build`: the config of every target with every field's effective value. */
export async function buildCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { output: { type: "string", short: "o" } }, USAGE);
  if (positionals.length === 0) throw new UsageError(`build takes at least one graph module\nusage: ${USAGE}`);
  const outDir = values.output ? dirname(resolve(values.output)) : process.cwd();
  const names = new Map<string, string>();
  const applications = [];
  for (const target of positionals) {
    const name = appName(target, positionals.length === 1);
    const clash = names.get(name);
    if (clash) throw new UsageError(`${clash} and ${target} would both be named "${name}"; export the graphs under different names (graph.ts:name)`);
    names.set(name, target);
    const file = target.replace(/:[A-Za-z_$][\w$]*$/, "");
    const importPath = relativeImport(outDir, resolve(file)) + target.slice(file.length);
    try {
      const planned = await planApp({ name, importPath, deployments: [] }, outDir, "/");
      applications.push(planned.config);
    } catch (e) {
      if (e instanceof ServeError) throw new UsageError(`${target}: ${e.message}`);
      throw e;
    }
  }
  // Still written (the file is the place to fix it), but it would not run as it is.
  const byPrefix = new Map<string, string>();
  for (const a of applications) {
    const other = byPrefix.get(a.routePrefix);
    if (other) process.stderr.write(`serve-bin: warning: applications ${other} and ${a.name} both serve ${a.routePrefix}; give each its own routePrefix in the file before running it\n`);
    else byPrefix.set(a.routePrefix, a.name);
  }
  const base = parseConfig({});
  if (!base.ok) throw new Error("default config is invalid");
  const config = { ...base.value, applications } as unknown as ServeConfig;
  const yaml = toYAML(config);
  if (values.output) {
    writeFileSync(values.output, yaml);
    process.stderr.write(`serve-bin: wrote ${values.output} (${applications.length} application${applications.length === 1 ? "" : "s"})\n`);
  } else process.stdout.write(yaml);
  return 0;
}
