/**
 * Where a cold start's time goes: runs the compiled `serve-bin run` on a graph
 * and prints one timeline (spawn, the server's own lines, each child process
 * seen and gone, the first POST that answered 200 and when it was sent) and
 * the CPU time of every process (utime + stime from /proc/<pid>/stat, whole
 * process; and the main thread's run time from schedstat, finer grained).
 * A diagnostic, not a scenario: nothing is written to bench/results.
 *   bun bench/startup-probe.ts [GRAPH] [--path /my-dag] [--body JSON] [--runs 1]
 * Children are found every 2 ms through /proc/<pid>/task/<tid>/children, so a
 * process that lives less than that may be missed; the probe's own polling
 * takes a little CPU from the 2 cores.
 */
import { readdirSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { BINARY, ROOT } from "./lib/paths.ts";
import { option } from "./lib/cli-option.ts";

const TICK_MS = 1000 / (Number(Bun.spawnSync(["getconf", "CLK_TCK"]).stdout.toString().trim()) || 100);

interface Seen {
  pid: number;
  role: string;
  firstMs: number;
  goneMs: number | null;
  /** utime + stime, ms, last read. */
  cpuMs: number;
  /** The main thread's run time, ms, last read. */
  mainMs: number;
}

function children(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const text = readFileSync(`/proc/${pid}/task/${tid}/children`, "utf8").trim();
      if (text) out.push(...text.split(" ").map(Number));
    }
  } catch {}
  return out;
}

function cpu(pid: number): { cpuMs: number; mainMs: number } | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
    const mainNs = Number(readFileSync(`/proc/${pid}/schedstat`, "utf8").split(" ")[0]);
    return { cpuMs: (Number(f[11]) + Number(f[12])) * TICK_MS, mainMs: mainNs / 1e6 };
  } catch {
    return null;
  }
}

function roleOf(pid: number): string {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    return argv.slice(1, 3).join(" ").trim() || argv[0]!;
  } catch {
    return "?";
  }
}

async function once(graph: string, path: string, body: string): Promise<void> {
  const events: [number, string][] = [];
  const t0 = performance.now();
  const at = () => performance.now() - t0;
  const proc = Bun.spawn([BINARY, "run", graph, "--port", "0", "--admin-port", "0"], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  events.push([0, `spawn serve-bin run (pid ${proc.pid})`]);
  const seen = new Map<number, Seen>();
  seen.set(proc.pid, { pid: proc.pid, role: "server", firstMs: 0, goneMs: null, cpuMs: 0, mainMs: 0 });
  let url: string | null = null;
  const lines = (async () => {
    const decoder = new TextDecoder();
    let buf = "";
    for await (const chunk of proc.stdout) {
      buf += decoder.decode(chunk);
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        events.push([at(), line.replace(/^serve-bin: /, "")]);
        const m = /listening on (http:\/\/\S+)/.exec(line);
        if (m) url = m[1]!;
      }
    }
  })();
  let polling = true;
  const poll = (async () => {
    while (polling) {
      const now = at();
      const live = new Set<number>();
      const stack = [proc.pid];
      while (stack.length) {
        const p = stack.pop()!;
        live.add(p);
        for (const c of children(p)) stack.push(c);
      }
      for (const p of live) {
        let s = seen.get(p);
        if (!s) {
          s = { pid: p, role: roleOf(p), firstMs: now, goneMs: null, cpuMs: 0, mainMs: 0 };
          seen.set(p, s);
          events.push([now, `seen ${s.role} (pid ${p})`]);
        }
        const c = cpu(p);
        if (c) Object.assign(s, c);
        // A child is first seen between fork and exec, still under its parent's command line.
        if (p !== proc.pid && (s.role === "" || s.role.startsWith("run "))) s.role = roleOf(p);
      }
      for (const s of seen.values()) {
        if (s.goneMs === null && !live.has(s.pid)) {
          s.goneMs = now;
          events.push([now, `gone ${s.role} (pid ${s.pid}; last read ${s.cpuMs.toFixed(0)} ms CPU)`]);
        }
      }
      await Bun.sleep(2);
    }
  })();
  let okAt = 0;
  let sentAt = 0;
  for (;;) {
    if (at() > 30_000) throw new Error("no 200 within 30 s");
    if (!url) {
      await Bun.sleep(5);
      continue;
    }
    const sent = at();
    try {
      const res = await fetch(`${url}${path}`, { method: "POST", body, headers: { "content-type": "application/json" } });
      await res.text();
      if (res.status === 200) {
        okAt = at();
        sentAt = sent;
        break;
      }
    } catch {}
    await Bun.sleep(5);
  }
  events.push([sentAt, "POST sent (the one that answered 200)"], [okAt, "first 200"]);
  polling = false;
  await poll;
  const cpuAt200 = [...seen.values()].map((s) => ({ ...s }));
  proc.kill("SIGTERM");
  await proc.exited;
  await lines;
  events.sort((a, b) => a[0] - b[0]);
  for (const [t, e] of events) console.log(`${t.toFixed(1).padStart(8)} ms  ${e}`);
  console.log("\nCPU per process when the first 200 came (utime+stime, 10 ms ticks; main thread from schedstat):");
  let total = 0;
  for (const s of cpuAt200) {
    total += s.cpuMs;
    const life = `${s.firstMs.toFixed(0)}–${s.goneMs === null ? "" : s.goneMs.toFixed(0)}`;
    console.log(`  ${s.role.padEnd(22)} pid ${String(s.pid).padEnd(8)} ${s.cpuMs.toFixed(0).padStart(5)} ms  main thread ${s.mainMs.toFixed(1).padStart(6)} ms  seen ${life} ms`);
  }
  const load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  console.log(`  total ${total.toFixed(0)} ms CPU; spawn → first 200 ${okAt.toFixed(0)} ms; load average ${load}\n`);
}

const graph = resolve(process.argv[2] && !process.argv[2].startsWith("--") ? process.argv[2] : resolve(ROOT, "examples/tutorial/graph.ts"));
const path = option("--path", "/my-dag");
const body = option("--body", JSON.stringify(["5", [1, 2], "sum"]));
const runs = Number(option("--runs", "1"));
for (let i = 0; i < runs; i++) await once(graph, path, body);
