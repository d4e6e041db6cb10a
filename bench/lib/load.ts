/**
 * HTTP load for the throughput scenarios: wrk (the Debian package; installed
 * here when missing and run as root), or, only if wrk cannot be had, a Bun
 * load generator — the same generator for both sides of every ratio, and the
 * results say which one ran.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BUN, LIB } from "./paths.ts";
import type { ProcessSet } from "./procs.ts";

export interface LoadResult {
  requests: number;
  rps: number;
  latencyMs: { mean: number; median: number; p99: number };
  /** Non-2xx answers and socket errors. */
  errors: number;
}

export interface LoadSpec {
  url: string;
  body: string;
  connections: number;
  durationS: number;
}

export interface Generator {
  name: string;
  run(spec: LoadSpec): Promise<LoadResult>;
}

let chosen: Promise<Generator> | null = null;

/** wrk if present (installing it with apt-get when root), else the Bun fallback. */
export function loadGenerator(procs: ProcessSet, log: (s: string) => void): Promise<Generator> {
  return (chosen ??= (async () => {
    if (!Bun.which("wrk") && process.getuid?.() === 0 && Bun.which("apt-get")) {
      log("wrk is missing; installing the Debian package");
      const install = () => Bun.spawnSync(["apt-get", "install", "-y", "-q", "wrk"], { stdout: "ignore", stderr: "pipe", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
      if (install().exitCode !== 0) {
        Bun.spawnSync(["apt-get", "update", "-q"], { stdout: "ignore", stderr: "ignore" });
        install();
      }
    }
    const wrk = Bun.which("wrk");
    if (wrk) {
      const v = Bun.spawnSync([wrk, "-v"]).stdout.toString().split("\n")[0]?.trim() ?? "wrk";
      return wrkGenerator(wrk, /^wrk \S+/.exec(v)?.[0] ?? "wrk", procs);
    }
    log("wrk could not be installed: using the Bun load generator (bench/lib/bun-load.ts) for both sides");
    return bunGenerator(procs);
  })());
}

function wrkGenerator(wrk: string, version: string, procs: ProcessSet): Generator {
  return {
    name: version,
    async run(spec) {
      const dir = mkdtempSync(join(tmpdir(), "sb-bench-wrk-"));
      const script = join(dir, "post.lua");
      writeFileSync(script, `wrk.method = "POST"\nwrk.body = ${JSON.stringify(spec.body)}\nwrk.headers["Content-Type"] = "application/json"\n`);
      try {
        // One wrk thread: on two cores the generator should not take more than one from the server.
        const p = procs.spawn("wrk", [wrk, "-t1", `-c${spec.connections}`, `-d${spec.durationS}s`, "--latency", "-s", script, spec.url]);
        const code = await p.proc.exited;
        await p.stop();
        if (code !== 0) throw new Error(`wrk exited with ${code}:\n${p.output()}`);
        return parseWrk(p.output());
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

const UNIT: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 };
const ms = (v: string, u: string) => Number(v) * UNIT[u]!;

/** Reads wrk's text report (with --latency). */
export function parseWrk(out: string): LoadResult {
  const rps = Number(/Requests\/sec:\s*([\d.]+)/.exec(out)?.[1]);
  const requests = Number(/(\d+) requests in/.exec(out)?.[1]);
  const mean = /Latency\s+([\d.]+)(us|ms|s|m)\s/.exec(out);
  const p50 = /50%\s+([\d.]+)(us|ms|s|m)/.exec(out);
  const p99 = /99%\s+([\d.]+)(us|ms|s|m)/.exec(out);
  const non2xx = Number(/Non-2xx or 3xx responses:\s*(\d+)/.exec(out)?.[1] ?? 0);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const sockErrors = sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0;
  if (!Number.isFinite(rps) || !mean || !p50 || !p99) throw new Error(`cannot read wrk's report:\n${out}`);
  return { requests, rps, latencyMs: { mean: ms(mean[1]!, mean[2]!), median: ms(p50[1]!, p50[2]!), p99: ms(p99[1]!, p99[2]!) }, errors: non2xx + sockErrors };
}

function bunGenerator(procs: ProcessSet): Generator {
  return {
    name: `bun-load (Bun ${Bun.version}; wrk unavailable)`,
    async run(spec) {
      const p = procs.spawn("bun-load", [BUN, join(LIB, "bun-load.ts"), JSON.stringify(spec)]);
      const code = await p.proc.exited;
      await p.stop();
      if (code !== 0) throw new Error(`bun-load exited with ${code}:\n${p.output()}`);
      return JSON.parse(p.output().trim().split("\n").pop()!) as LoadResult;
    },
  };
}
