import { existsSync, readFileSync } from "node:fs";
import { basename, dirname, resolve } from "node:path";
import { formatIssues, parseConfig, type ServeConfig } from "../config/schema.ts";
import { parseYAML } from "../config/yaml.ts";
import { readEnv } from "../config/env.ts";
import { UsageError } from "./args.ts";

export interface LoadedTarget {
  config: ServeConfig;
  /** Where relative import paths are resolved from. */
  baseDir: string;
}

const isConfigFile = (p: string) => /\.(ya?ml|json)$/i.test(p);

/**
 * `graph.ts[:export]` becomes a one-application config named `default`;
 * `config.yaml` is read and validated (every problem with its path).
 */
export function loadTarget(target: string, env = readEnv()): LoadedTarget {
  const file = target.replace(/:[A-Za-z_$][\w$]*$/, "");
  if (!existsSync(file)) throw new UsageError(`no file at ${file}; give a graph module (graph.ts[:export]) or a config file (app.yaml)`);
  if (isConfigFile(file)) {
    const parsed = parseYAML(readFileSync(file, "utf8"), file, env);
    if (!parsed.ok) throw new UsageError(`${file} is not a valid config:\n${formatIssues(parsed.issues)}`);
    return { config: parsed.value, baseDir: dirname(resolve(file)) };
  }
  if (!/\.(ts|tsx|mts|js|mjs|jsx)$/.test(file)) throw new UsageError(`${file} is neither a graph module (.ts, .js) nor a config file (.yaml, .json)`);
  const exportPart = target.slice(file.length);
  const parsed = parseConfig({ applications: [{ name: "default", importPath: `./${basename(file)}${exportPart}` }] }, env);
  if (!parsed.ok) throw new UsageError(formatIssues(parsed.issues));
  return { config: parsed.value, baseDir: dirname(resolve(file)) };
}
