/**
 * The commands that talk to a running server through its admin API:
 * `deploy`, `status`, `config` and `shutdown`.
 */
import { readFileSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { parse as parseYAMLText } from "yaml";
import type { Issue } from "../error.ts";
import { formatIssues, parseImportPath } from "../config/schema.ts";
import { parseYAML } from "../config/yaml.ts";
import { readEnv } from "../config/env.ts";
import type { StatusJSON } from "../runtime/control/status.ts";
import { addressFlags, adminAddress, adminToken, parse, UsageError } from "./args.ts";

const POLL_MS = 200;
const SHUTDOWN_WAIT_MS = 30_000;

/** The admin API could not be reached at all. */
class Unreachable extends Error {}

/** A JSON error body from the admin API. */
interface ErrorBody {
  error?: string;
  message?: string;
  issues?: Issue[];
  stack?: string;
}

/** A small client of the admin API: the address, the token, and errors that say what to do. */
class AdminClient {
  constructor(
    readonly url: string,
    readonly token: string | undefined,
  ) {}

  static fromFlags(values: { address?: string; "admin-token"?: string }): AdminClient {
    return new AdminClient(adminAddress(values.address), adminToken(values, readEnv().adminToken, (line) => console.error(line)));
  }

  async request(method: string, path: string, init: { body?: string; headers?: Record<string, string>; signal?: AbortSignal } = {}): Promise<Response> {
    const headers: Record<string, string> = { ...init.headers };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    try {
      // timeout: false — a PUT answers only once the change serves, which may take minutes.
      return await fetch(`${this.url}${path}`, { method, headers, body: init.body, signal: init.signal, timeout: false } as RequestInit);
    } catch (e) {
      if ((e as Error).name === "AbortError") throw e;
      throw new Unreachable(`cannot reach the serve-bin admin API at ${this.url}: ${reason(e)}; is a server running? (serve-bin run / serve-bin start)`);
    }
  }

  async json<T>(path: string): Promise<T> {
    const res = await this.request("GET", path);
    if (!res.ok) throw await refused(res);
    return (await res.json()) as T;
  }
}

/** A refusal from the server, with the exit code it deserves. */
class Refused extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

async function refused(res: Response): Promise<Refused> {
  const text = await res.text();
  let body: ErrorBody = {};
  try {
    body = JSON.parse(text) as ErrorBody;
  } catch {
    body = { message: text || res.statusText };
  }
  const lines = [body.message ?? `HTTP ${res.status}`];
  if (body.issues?.length && !body.message?.includes(formatIssues(body.issues))) lines.push(formatIssues(body.issues));
  if (body.stack) lines.push(body.stack);
  // 401 and 422 are the caller's to fix (token, config); anything else is a runtime failure.
  return new Refused(lines.join("\n"), res.status === 401 || res.status === 422 || res.status === 400 ? 2 : 1);
}

function reason(e: unknown): string {
  const err = e as Error & { code?: string };
  if (err.code === "ConnectionRefused" || err.code === "ECONNREFUSED") return "connection refused";
  return err.code ? `${err.code}: ${err.message}` : (err.message ?? String(e));
}

/** Runs a command body, turning the client's errors into a message and an exit code. */
async function guarded(body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (e) {
    if (e instanceof Unreachable) {
      console.error(`serve-bin: ${e.message}`);
      return 1;
    }
    if (e instanceof Refused) {
      console.error(`serve-bin: ${e.message}`);
      return e.exitCode;
    }
    throw e;
  }
}

// ---------------------------------------------------------------- deploy

const DEPLOY_USAGE = "serve-bin deploy <config.yaml> [--address URL] [--admin-token-file F]";

/**
 * `serve-bin deploy <config.yaml>`: validates the file here, sends it whole,
 * prints progress until the server answers, exits 0 (running), 1 (failed) or
 * 2 (invalid config).
 *
 * @example await deployCommand(["app.yaml", "--address", "http://127.0.0.1:8265"])
 */
export async function deployCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, addressFlags, DEPLOY_USAGE);
  if (positionals.length !== 1) throw new UsageError(`deploy takes one config file\nusage: ${DEPLOY_USAGE}`);
  const file = resolve(positionals[0]!);
  const client = AdminClient.fromFlags(values);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    console.error(`serve-bin: cannot read ${positionals[0]}: ${(e as Error).message}`);
    return 2;
  }
  const checked = parseYAML(text, positionals[0]);
  if (!checked.ok) {
    console.error(`serve-bin: ${positionals[0]} is invalid; nothing was sent:\n${formatIssues(checked.issues)}`);
    return 2;
  }
  const body = withAbsoluteImportPaths(parseYAMLText(text) ?? {}, dirname(file));

  return guarded(async () => {
    const progress = new Progress();
    const done = new AbortController();
    const polling = pollStatus(client, progress, done.signal);
    let res: Response;
    try {
      res = await client.request("PUT", "/api/applications", { body: JSON.stringify(body), headers: { "content-type": "application/json" } });
    } finally {
      done.abort();
      await polling;
    }
    if (!res.ok) {
      const err = await refused(res);
      console.error(`serve-bin: deploy of ${positionals[0]} ${res.status === 422 ? "refused" : "failed"}: ${err.message}`);
      return err.exitCode;
    }
    const answer = (await res.json()) as { status: StatusJSON; needsRestart: string[] };
    progress.show(answer.status);
    console.log("");
    console.log(statusTable(answer.status));
    if (answer.needsRestart.length) {
      console.log(`\nnote: ${answer.needsRestart.join(", ")} differ from the running server's and take effect only after a restart of the server`);
    }
    return 0;
  });
}

/**
 * The server resolves relative import paths from its own directory, so the
 * file's relative paths are made absolute here, from the file's directory.
 */
function withAbsoluteImportPaths(doc: unknown, baseDir: string): unknown {
  const d = doc as { applications?: { importPath?: string }[] };
  if (!Array.isArray(d.applications)) return doc;
  return {
    ...d,
    applications: d.applications.map((a) => {
      const parts = typeof a?.importPath === "string" ? parseImportPath(a.importPath) : null;
      if (!parts || isAbsolute(parts.file)) return a;
      return { ...a, importPath: resolve(baseDir, parts.file) + a.importPath!.slice(parts.file.length) };
    }),
  };
}

/** Polls the status every 200 ms while a change is under way, printing what changed. */
async function pollStatus(client: AdminClient, progress: Progress, signal: AbortSignal): Promise<void> {
  while (!signal.aborted) {
    try {
      const res = await client.request("GET", "/api/applications", { signal });
      if (res.ok) progress.show((await res.json()) as StatusJSON);
    } catch {
      // The PUT reports unreachability; polling only decorates.
    }
    await new Promise<void>((r) => {
      const t = setTimeout(r, POLL_MS);
      signal.addEventListener("abort", () => (clearTimeout(t), r()), { once: true });
    });
  }
}

/** Prints one line per application or deployment whose state or replica count changed. */
class Progress {
  readonly #last = new Map<string, string>();

  show(status: StatusJSON): void {
    for (const [app, a] of Object.entries(status.applications)) {
      this.#line(app, `${app}: ${a.status}${a.message ? ` — ${a.message}` : ""}`);
      for (const [name, d] of Object.entries(a.deployments)) {
        this.#line(`${app}/${name}`, `  ${app}/${name}: ${d.status}, ${running(d)}/${d.targetReplicas} replicas running${d.message ? ` — ${d.message}` : ""}`);
      }
    }
  }

  #line(key: string, line: string): void {
    if (this.#last.get(key) === line) return;
    this.#last.set(key, line);
    console.log(line);
  }
}

// ---------------------------------------------------------------- status, config, shutdown

const STATUS_USAGE = "serve-bin status [--address URL] [--admin-token-file F] [--json]";

/**
 * `serve-bin status`: applications, deployments and replicas as a table, or the raw JSON with `--json`.
 *
 * @example await statusCommand(["--json"])
 */
export async function statusCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { ...addressFlags, json: { type: "boolean" } }, STATUS_USAGE);
  const client = AdminClient.fromFlags(values);
  return guarded(async () => {
    const status = await client.json<StatusJSON>("/api/applications");
    console.log(values.json ? JSON.stringify(status, null, 2) : statusTable(status));
    return 0;
  });
}

const CONFIG_USAGE = "serve-bin config [--address URL] [--admin-token-file F]";

/**
 * `serve-bin config`: the applied config as YAML, every deployment with its effective options.
 *
 * @example await configCommand(["--address", "http://127.0.0.1:8265"])
 */
export async function configCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, addressFlags, CONFIG_USAGE);
  const client = AdminClient.fromFlags(values);
  return guarded(async () => {
    const res = await client.request("GET", "/api/config", { headers: { accept: "application/yaml" } });
    if (!res.ok) throw await refused(res);
    process.stdout.write(await res.text());
    return 0;
  });
}

const SHUTDOWN_USAGE = "serve-bin shutdown [--address URL] [--admin-token-file F]";

/**
 * `serve-bin shutdown`: asks the server to drain and exit, then waits (at most 30 s) until its admin port stops answering.
 *
 * @example await shutdownCommand([])
 */
export async function shutdownCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, addressFlags, SHUTDOWN_USAGE);
  const client = AdminClient.fromFlags(values);
  return guarded(async () => {
    const res = await client.request("POST", "/api/shutdown", { body: "{}", headers: { "content-type": "application/json" } });
    if (!res.ok) throw await refused(res);
    console.log(`serve-bin at ${client.url} is shutting down…`);
    const deadline = Date.now() + SHUTDOWN_WAIT_MS;
    while (Date.now() < deadline) {
      try {
        await client.request("GET", "/api/applications", { signal: AbortSignal.timeout(2000) });
      } catch (e) {
        if (e instanceof Unreachable) {
          console.log("stopped");
          return 0;
        }
      }
      await Bun.sleep(POLL_MS);
    }
    console.error(`serve-bin: the server at ${client.url} still answers after ${SHUTDOWN_WAIT_MS / 1000} s; see its log`);
    return 1;
  });
}

// ---------------------------------------------------------------- the table

type DeploymentStatusJSON = StatusJSON["applications"][string]["deployments"][string];

function running(d: DeploymentStatusJSON): number {
  return d.replicas.filter((r) => r.state === "RUNNING").length;
}

/**
 * The status as a table: one row per deployment, the application's columns
 * on its first row, its message (when any) below it.
 */
export function statusTable(status: StatusJSON): string {
  const apps = Object.entries(status.applications);
  if (!apps.length) return "no applications yet; deploy one with serve-bin deploy <config.yaml>";
  const rows: string[][] = [["APPLICATION", "STATUS", "ROUTE", "DEPLOYMENT", "STATUS", "REPLICAS", "RESTARTS"]];
  const notes: string[] = [];
  for (const [app, a] of apps) {
    const deployments = Object.entries(a.deployments);
    if (!deployments.length) rows.push([app, a.status, a.routePrefix, "-", "-", "-", "-"]);
    deployments.forEach(([name, d], i) => {
      rows.push([i ? "" : app, i ? "" : a.status, i ? "" : a.routePrefix, name, d.status, `${running(d)}/${d.targetReplicas}`, String(d.restarts)]);
      if (d.message) notes.push(`${app}/${name}: ${d.message}`);
    });
    if (a.message) notes.push(`${app}: ${a.message}`);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const table = rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c]!)).join("  ").trimEnd()).join("\n");
  return notes.length ? `${table}\n\n${notes.join("\n")}` : table;
}
