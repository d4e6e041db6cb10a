/**
 * The config file as YAML: written in the order of SPEC section 3 so a built
 * file reads like the docs, and read with positions so every problem points
 * at its line.
 */
import { LineCounter, parseDocument, stringify, type Document } from "yaml";
import type { Issue } from "../error.ts";
import type { ServeEnv } from "./env.ts";
import { keyOrder, parseConfig, type ConfigResult, type ServeConfig } from "./schema.ts";

type Obj = Record<string, unknown>;
type Order = readonly string[];

/** `value`'s keys in `order` first, then any others; undefined values dropped. */
function ordered(value: unknown, order: Order, nested: Record<string, (v: unknown) => unknown> = {}): unknown {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return value;
  const v = value as Obj;
  const out: Obj = {};
  for (const k of [...order, ...Object.keys(v).filter((k) => !order.includes(k))]) {
    if (v[k] === undefined) continue;
    out[k] = nested[k] ? nested[k](v[k]) : v[k];
  }
  return out;
}

const list = (f: (v: unknown) => unknown) => (v: unknown) => (Array.isArray(v) ? v.map(f) : v);

const deployment = (d: unknown) =>
  ordered(d, keyOrder().deployment, { autoscalingConfig: (a) => ordered(a, keyOrder().autoscaling) });
const application = (a: unknown) => ordered(a, keyOrder().application, { deployments: list(deployment) });

/**
 * The config as YAML, keys in the order of the docs. An empty `routes` is left out.
 *
 * @example await Bun.write("app.yaml", toYAML(app.config))
 */
export function toYAML(config: ServeConfig): string {
  const { routes, ...rest } = config;
  const doc = ordered(routes?.length ? config : rest, keyOrder().config, {
    proxy: (v) => ordered(v, keyOrder().proxy),
    admin: (v) => ordered(v, keyOrder().admin),
    sharedMemory: (v) => ordered(v, keyOrder().sharedMemory),
    limits: (v) => ordered(v, keyOrder().limits),
    applications: list(application),
    routes: list((r) => ordered(r, keyOrder().route)),
  });
  // No anchors for shared objects, no folded long strings: plain, greppable YAML.
  return stringify(doc, { aliasDuplicateObjects: false, lineWidth: 0 });
}

/** The longest config text read: a config is settings, not data. */
export const MAX_YAML_CHARS = 4 << 20;
/**
 * Aliases a config may expand. Each alias copies what its anchor holds, so a
 * few lines of anchors of anchors (a "billion laughs") expand exponentially.
 */
export const MAX_YAML_ALIASES = 100;

/**
 * The document as plain data, or why it cannot be. The yaml package stops a
 * document whose aliases expand too far by throwing; that is the author's
 * mistake (or an attack), so it is an issue like any other, never a crash.
 *
 * @example toValue(parseDocument("a: &x [1]\nb: *x")) // { ok: true, value: { a: [1], b: [1] } }
 */
export function toValue(doc: Document): { ok: true; value: unknown } | { ok: false; message: string } {
  try {
    return { ok: true, value: doc.toJS({ maxAliasCount: MAX_YAML_ALIASES }) };
  } catch (e) {
    return { ok: false, message: `its aliases (*name) expand too far (${(e as Error).message}); write the values out, or use fewer aliases (at most ${MAX_YAML_ALIASES} expansions)` };
  }
}

/** `source:line:col` of the node at `path`, or of its nearest ancestor present in the file. */
function where(doc: Document, lines: LineCounter, source: string, path: readonly (string | number)[]): string | undefined {
  for (let n = path.length; n >= 0; n--) {
    const node = doc.getIn(path.slice(0, n), true) as { range?: [number, number, number] } | undefined;
    if (node?.range) {
      const { line, col } = lines.linePos(node.range[0]);
      return `${source}:${line}:${col}`;
    }
  }
  return undefined;
}

/**
 * Reads a config file: YAML syntax errors and validation problems both come
 * back as issues, each message ending with `(source:line:col)`. An empty file
 * is a config with every default and no application.
 *
 * @example
 * const r = parseYAML(await Bun.file("app.yaml").text(), "app.yaml");
 * if (!r.ok) { console.error(formatIssues(r.issues)); process.exit(2); }
 */
export function parseYAML(text: string, sourceName = "config", env: ServeEnv = {}): ConfigResult<ServeConfig> {
  if (text.length > MAX_YAML_CHARS) {
    return { ok: false, issues: [{ path: [], message: `${sourceName} is ${text.length} characters long, more than a config may be (${MAX_YAML_CHARS}); move large data out of userConfig into a file the replicas read` }] };
  }
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length) {
    const issues: Issue[] = doc.errors.map((e) => {
      const { line, col } = lines.linePos(e.pos[0]);
      return { path: [], message: `${sourceName}:${line}:${col}: YAML syntax error: ${e.message}` };
    });
    return { ok: false, issues };
  }
  const value = toValue(doc);
  if (!value.ok) return { ok: false, issues: [{ path: [], message: `${sourceName}: ${value.message}` }] };
  const result = parseConfig(value.value ?? {}, env);
  if (result.ok) return result;
  const issues = result.issues.map((i) => {
    const at = where(doc, lines, sourceName, i.path);
    return at ? { path: i.path, message: `${i.message} (${at})` } : i;
  });
  return { ok: false, issues };
}
