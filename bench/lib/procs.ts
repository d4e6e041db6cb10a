/**
 * Every process a scenario starts goes through a ProcessSet, and is stopped
 * by its pid: the process itself, then any descendant still alive (a
 * serve-bin server's replicas). Nothing is found or killed by name.
 */
import { readdirSync, readFileSync } from "node:fs";
import type { Subprocess } from "bun";

export interface Tracked {
  readonly proc: Subprocess<"ignore", "pipe", "pipe">;
  readonly pid: number;
  readonly name: string;
  /** Everything printed so far on stdout and stderr. */
  output(): string;
  /** Resolves with the first match of `re` in the output; rejects if the process exits first or after `timeoutMs`. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  /** Signals the process (SIGTERM by default), waits for it, then ends descendants left behind. Returns the exit code. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<number | null>;
}

function ppidOf(pid: number): number | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(text.slice(text.lastIndexOf(")") + 2).split(" ")[1]);
  } catch {
    return null;
  }
}

export function alive(pid: number): boolean {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    return text.slice(text.lastIndexOf(")") + 2, text.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** Pids of every live descendant of `pid`. */
export function descendants(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    const pp = ppidOf(Number(d));
    if (pp !== null) parent.set(Number(d), pp);
  }
  const out: number[] = [];
  const want = new Set([pid]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [child, pp] of parent) {
      if (want.has(pp) && !want.has(child)) {
        want.add(child);
        out.push(child);
        grew = true;
      }
    }
  }
  return out;
}

/** What each pid was (bench processes, and replicas by deployment), for reading profiles afterwards. */
export const pidLabels = new Map<number, string>();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class ProcessSet {
  readonly #live = new Set<Tracked>();
  /** Processes that had to be killed after their parent exited: a bug in what they run, reported in the results. */
  readonly leftBehind: string[] = [];

  spawn(name: string, cmd: string[], opts: { cwd?: string; env?: Record<string, string | undefined> } = {}): Tracked {
    const proc = Bun.spawn(cmd, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    let out = "";
    let exited = false;
    const wakers = new Set<() => void>();
    const pump = async (s: ReadableStream<Uint8Array>) => {
      const d = new TextDecoder();
      for await (const c of s) {
        out += d.decode(c, { stream: true });
        if (out.length > 1 << 20) out = out.slice(-(1 << 19));
        for (const w of wakers) w();
      }
    };
    void pump(proc.stdout);
    void pump(proc.stderr);
    void proc.exited.then(() => {
      exited = true;
      for (const w of wakers) w();
    });
    const set = this;
    const tracked: Tracked = {
      proc,
      pid: proc.pid,
      name,
      output: () => out,
      waitFor(re, timeoutMs = 30_000) {
        return new Promise((resolve, reject) => {
          const timer = setTimeout(() => done(new Error(`${name}: timed out after ${timeoutMs} ms waiting for ${re}; output:\n${out.slice(-4000)}`)), timeoutMs);
          const check = () => {
            const m = re.exec(out);
            if (m) return done(null, m);
            if (exited) done(new Error(`${name} exited with ${proc.exitCode ?? proc.signalCode} before printing ${re}; output:\n${out.slice(-4000)}`));
          };
          const done = (e: Error | null, m?: RegExpExecArray) => {
            clearTimeout(timer);
            wakers.delete(check);
            if (e) reject(e);
            else resolve(m!);
          };
          wakers.add(check);
          check();
        });
      },
      async stop(signal = "SIGTERM", graceMs = 10_000) {
        const kids = descendants(proc.pid);
        if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
        const ended = await Promise.race([proc.exited.then(() => true), sleep(graceMs).then(() => false)]);
        if (!ended) {
          set.leftBehind.push(`${name} (pid ${proc.pid}) ignored ${signal} for ${graceMs} ms; killed`);
          proc.kill("SIGKILL");
          await proc.exited;
        }
        // Replicas exit on their own when the server's IPC channel closes; give them a moment, then end stragglers by pid.
        const deadline = Date.now() + 3000;
        while (kids.some(alive) && Date.now() < deadline) await sleep(20);
        for (const k of kids.filter(alive)) {
          set.leftBehind.push(`pid ${k} (child of ${name}) was still running 3 s after it stopped; killed`);
          try {
            process.kill(k, "SIGKILL");
          } catch {}
        }
        set.#live.delete(tracked);
        return proc.exitCode;
      },
    };
    this.#live.add(tracked);
    pidLabels.set(proc.pid, name);
    return tracked;
  }

  /** Stops everything still running, newest first. */
  async stopAll(): Promise<void> {
    for (const t of [...this.#live].reverse()) await t.stop("SIGTERM", 5000);
  }
}

/** Resident memory of one process, from /proc/<pid>/status, in MiB. */
export interface Rss {
  rss: number;
  rssAnon: number;
  rssFile: number;
}

export function rssOf(pid: number): Rss | null {
  try {
    const s = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s*(\\d+)`, "m").exec(s)?.[1] ?? NaN);
    return { rss: kb("VmRSS") / 1024, rssAnon: kb("RssAnon") / 1024, rssFile: (kb("RssFile") + kb("RssShmem")) / 1024 };
  } catch {
    return null;
  }
}

export { sleep };
