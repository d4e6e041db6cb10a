/** Starts `serve-bin run` (from source, or the compiled binary) and talks to it. */
import { existsSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BINARY, BUN, CLI, ROOT } from "./paths.ts";
import { pidLabels, type ProcessSet, type Tracked } from "./procs.ts";

export interface ServeBin {
  proc: Tracked;
  pid: number;
  url: string;
  adminUrl: string;
  /** The server's own "ready in N ms". */
  readyMs: number;
  status(): Promise<Status>;
  /** Pid of each replica, by deployment name (from the admin API). */
  replicaPids(): Promise<Record<string, number[]>>;
  /** SIGTERM, wait, and check nothing is left behind (processes, /dev/shm files, run directories). */
  stop(): Promise<void>;
}

export interface Status {
  applications: Record<string, { status: string; deployments: Record<string, { status: string; targetReplicas: number; replicas: { id: string; pid: number; state: string }[] }> }>;
}

export interface StartOptions {
  compiled?: boolean;
  args?: string[];
  env?: Record<string, string>;
  timeoutMs?: number;
}

export function serveBinCommand(compiled = false): string[] {
  return compiled ? [BINARY] : [BUN, CLI];
}

/** Files serve-bin leaves for a run of `pid` (/dev/shm arenas, run directories); any after stop is a bug. */
export function leftovers(pid: number): string[] {
  const mine = (n: string) => n.startsWith(`serve-bin-${pid}-`);
  const list = (dir: string) => (existsSync(dir) ? readdirSync(dir).filter(mine).map((n) => join(dir, n)) : []);
  return [...list("/dev/shm"), ...list(tmpdir())];
}

export async function startServeBin(procs: ProcessSet, target: string, opts: StartOptions = {}): Promise<ServeBin> {
  const cmd = [...serveBinCommand(opts.compiled), "run", target, "--port", "0", "--admin-port", "0", ...(opts.args ?? [])];
  const proc = procs.spawn(`serve-bin run ${target.replace(ROOT + "/", "")}`, cmd, { cwd: ROOT, env: opts.env });
  try {
    const m = await proc.waitFor(/listening on (http:\/\/\S+) \(admin API on (http:\/\/[^\s)]+)\)/, opts.timeoutMs ?? 30_000);
    const ready = await proc.waitFor(/ready in (\d+) ms/, opts.timeoutMs ?? 30_000);
    return serveBinAt(proc, m[1]!, m[2]!, Number(ready[1]), procs);
  } catch (e) {
    await proc.stop("SIGKILL");
    throw e;
  }
}

export function serveBinAt(proc: Tracked, url: string, adminUrl: string, readyMs: number, procs: ProcessSet): ServeBin {
  const status = async () => (await (await fetch(`${adminUrl}/api/applications`)).json()) as Status;
  return {
    proc,
    pid: proc.pid,
    url,
    adminUrl,
    readyMs,
    status,
    async replicaPids() {
      const s = await status();
      const out: Record<string, number[]> = {};
      for (const app of Object.values(s.applications)) for (const [name, d] of Object.entries(app.deployments)) out[name] = d.replicas.map((r) => r.pid);
      return out;
    },
    async stop() {
      try {
        for (const [name, ps] of Object.entries(await this.replicaPids())) ps.forEach((p, i) => pidLabels.set(p, `${name}#${i} replica of ${proc.name}`));
      } catch {}
      const code = await proc.stop();
      if (code !== 0) procs.leftBehind.push(`${proc.name} exited with ${code} on SIGTERM (expected 0)`);
      const files = leftovers(proc.pid);
      if (files.length) procs.leftBehind.push(`${proc.name} left files behind: ${files.join(", ")}`);
    },
  };
}

/** POSTs JSON and returns the response's text; throws unless 200. */
export async function postJSON(url: string, body: unknown): Promise<string> {
  const res = await fetch(url, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`POST ${url} answered ${res.status}: ${text.slice(0, 500)}`);
  return text;
}
