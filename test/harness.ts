/**
 * Test harness: real processes, real sockets, real HTTP. Servers are started
 * with port 0 and found from what they print; everything started here is
 * ended by pid, and tests wait for conditions, never for time.
 */
import { mkdtempSync, rmSync, existsSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import { expect } from "vitest";

export const ROOT = resolve(import.meta.dirname, "..");
export const CLI = join(ROOT, "src/cli/main.ts");
export const BINARY = join(ROOT, "dist/serve-bin");
export const EXAMPLES = join(ROOT, "examples");
/** The Bun that runs the tests (the npm package's, under `bun --bun vitest`). */
export const BUN = process.execPath;

/** Resolves when `cond()` is truthy; rejects after `timeoutMs` with `what`. */
export async function waitFor<T>(cond: () => T | Promise<T>, what: string, timeoutMs = 20_000, everyMs = 20): Promise<NonNullable<T>> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v as NonNullable<T>;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(everyMs);
  }
}

export interface TempDir extends AsyncDisposable {
  path: string;
}

export function tempDir(prefix = "sb-test-"): TempDir {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, [Symbol.asyncDispose]: async () => rmSync(path, { recursive: true, force: true }) };
}

export interface RunningServer extends AsyncDisposable {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  /** Data-plane URL, e.g. http://127.0.0.1:40123 */
  url: string;
  adminUrl: string;
  /** Everything printed so far (stdout and stderr). */
  output(): string;
  /** SIGTERM, then the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number>;
}

export interface StartOptions {
  /** Run the compiled binary instead of the source CLI. */
  compiled?: boolean;
  /** Run this command instead (e.g. an installed package's bin); `run <target> ...` follows it. */
  command?: string[];
  cwd?: string;
  args?: string[];
  env?: Record<string, string>;
  /** Wait for "ready in" (default) or only for the listening line. */
  waitReady?: boolean;
  timeoutMs?: number;
}

/** The command that runs serve-bin: `[bun, src/cli/main.ts]` or the compiled binary. */
export function cliCommand(compiled = false): string[] {
  return compiled ? [BINARY] : [BUN, CLI];
}

/** Starts `serve-bin run <target> --port 0 --admin-port 0 ...` and waits until it serves. */
export async function startServer(target: string, opts: StartOptions = {}): Promise<RunningServer> {
  const cmd = [...(opts.command ?? cliCommand(opts.compiled)), "run", target, "--port", "0", "--admin-port", "0", ...(opts.args ?? [])];
  const proc = Bun.spawn(cmd, { cwd: opts.cwd ?? ROOT, env: { ...process.env, ...opts.env }, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  let out = "";
  const pump = async (s: ReadableStream<Uint8Array>) => {
    const d = new TextDecoder();
    for await (const c of s) out += d.decode(c, { stream: true });
  };
  void pump(proc.stdout);
  void pump(proc.stderr);
  const stop = async (signal: NodeJS.Signals = "SIGTERM") => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    return proc.exited;
  };
  try {
    const m = await waitFor(
      () => {
        if (proc.exitCode !== null) throw new Error(`serve-bin exited with ${proc.exitCode} before serving:\n${out}`);
        return /listening on (http:\/\/\S+) \(admin API on (http:\/\/\S+)\)/.exec(out);
      },
      "the server to listen",
      opts.timeoutMs ?? 30_000,
    );
    if (opts.waitReady !== false) {
      await waitFor(
        () => {
          if (proc.exitCode !== null) throw new Error(`serve-bin exited with ${proc.exitCode} before it was ready:\n${out}`);
          return /ready in \d+ ms/.test(out);
        },
        "the application to be ready",
        opts.timeoutMs ?? 30_000,
      );
    }
    return { proc, url: m[1]!, adminUrl: m[2]!, output: () => out, stop, [Symbol.asyncDispose]: async () => void (await stop()) };
  } catch (e) {
    proc.kill("SIGKILL");
    await proc.exited;
    throw e;
  }
}

/**
 * startServer on the compiled binary. Another test run compiling dist/serve-bin
 * at that moment makes the spawn fail with ETXTBSY: wait until it is free.
 */
export function startCompiled(target: string, cwd: string): Promise<RunningServer> {
  return waitFor(
    async () => {
      try {
        return await startServer(target, { compiled: true, cwd });
      } catch (e) {
        if (!String(e).includes("ETXTBSY")) throw e;
        return null;
      }
    },
    "dist/serve-bin to be free to run (another run was compiling it)",
    30_000,
    100,
  );
}

/** Runs a serve-bin command to completion. */
export async function runCli(args: string[], opts: { cwd?: string; env?: Record<string, string>; compiled?: boolean } = {}) {
  const proc = Bun.spawn([...cliCommand(opts.compiled), ...args], { cwd: opts.cwd ?? ROOT, env: { ...process.env, ...opts.env }, stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

/** Pids of the direct children of `pid` (its replicas). */
/** Runs `script` (bun -e) and waits for it to end by itself: for timers or handles that must not keep a process alive. */
export async function scriptEnds(script: string): Promise<{ code: number | null; stdout: string }> {
  const proc = Bun.spawn([process.execPath, "-e", script], { stdout: "pipe", stderr: "inherit" });
  try {
    await waitFor(() => proc.exitCode !== null, "the process to end");
    return { code: proc.exitCode, stdout: (await new Response(proc.stdout).text()).trim() };
  } finally {
    proc.kill();
  }
}

export function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const text = readFileSync(`/proc/${d}/stat`, "utf8");
      const ppid = Number(text.slice(text.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) out.push(Number(d));
    } catch {}
  }
  return out;
}

export function alive(pid: number): boolean {
  return existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z ");
}

/** serve-bin files in /dev/shm and run directories in the temp dir (left-overs are bugs). */
export function leftovers(pid: number): string[] {
  const mine = (n: string) => n.startsWith(`serve-bin-${pid}-`);
  return [...readdirSync("/dev/shm").filter(mine).map((n) => `/dev/shm/${n}`), ...readdirSync(tmpdir()).filter(mine).map((n) => join(tmpdir(), n))];
}

export async function postJSON(url: string, body: unknown, init: RequestInit = {}): Promise<Response> {
  return fetch(url, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" }, ...init });
}

export function gone(pid: number): boolean {
  try {
    return !alive(pid);
  } catch {
    return true; // /proc/<pid> vanished while being read
  }
}

/** Replica processes of server `pid`, found by the run directory on their command line (they outlive a reparenting). */
export function replicasOf(pid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, "utf8").includes(`serve-bin-${pid}-`) && !gone(Number(d))) out.push(Number(d));
    } catch {}
  }
  return out;
}

/** The run directory a replica's command line names (`serve-bin-<server pid>-<random>`): one server's, where several share a pid. */
export function runDirOf(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").find((a) => /^serve-bin-\d+-/.test(a));
  } catch {
    return undefined; // gone meanwhile
  }
}

/** Ends by pid whatever a failed test left running: the server and its replicas. */
export function reap(pid: number, children: number[]): void {
  for (const p of [pid, ...children, ...replicasOf(pid)]) if (!gone(p)) process.kill(p, "SIGKILL");
}

/** SIGTERM: exit 0, every replica gone, no socket directory or shared-memory file left. */
export async function stopCleanly(server: RunningServer): Promise<void> {
  const pid = server.proc.pid;
  const children = childPids(pid);
  try {
    expect(await Promise.race([server.stop("SIGTERM"), Bun.sleep(15_000).then(() => "still running after 15 s")])).toBe(0);
    await waitFor(() => children.every(gone) && replicasOf(pid).length === 0, "every replica to exit", 5_000);
    expect(leftovers(pid)).toEqual([]);
  } finally {
    reap(pid, children);
  }
}

