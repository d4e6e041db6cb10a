/**
 * Where a sequential request sleeps: serves a graph, sends it N sequential
 * POSTs after a warm-up, and prints, per process and per thread, the wake-ups
 * (voluntary context switches) and CPU time (scheduler run time) per request.
 * A diagnostic, not a scenario: nothing is written to bench/results.
 *   bun bench/wake-probe.ts TARGET [--path /p] [--body JSON] [-n 1000] [--warm 300]
 *   bun bench/wake-probe.ts bench/fixtures/chain10.ts --body '{"x":1}' -n 3000 --warm 15000
 *   bun bench/wake-probe.ts examples/tutorial/graph.ts --path /my-dag --body '["5",[1,2],"sum"]' -n 20 --warm 3
 * The main thread is "bun" (or "bun.exe"); the others are Bun's (JIT, GC, allocator).
 */
import { readdirSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import { processesOf } from "./lib/http-compare.ts";
import { ProcessSet } from "./lib/procs.ts";
import { startServeBin } from "./lib/server.ts";
import { option } from "./lib/cli-option.ts";

interface Thread {
  name: string;
  switches: number;
  cpuNs: number;
}

function threads(pid: number): Map<string, Thread> {
  const out = new Map<string, Thread>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const status = readFileSync(`/proc/${pid}/task/${tid}/status`, "utf8");
      out.set(tid, {
        name: /Name:\s+(.*)/.exec(status)![1]!,
        switches: Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)![1]),
        cpuNs: Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]),
      });
    } catch {}
  }
  return out;
}

const target = process.argv[2];
if (!target || target.startsWith("-")) {
  console.error("usage: bun bench/wake-probe.ts TARGET [--path /p] [--body JSON] [-n N] [--warm N]");
  process.exit(2);
}
const path = option("--path", "");
const body = option("--body", "{}");
const n = Number(option("-n", "1000"));
const warm = Number(option("--warm", "300"));
const procs = new ProcessSet();
const server = await startServeBin(procs, resolve(target));
try {
  const pids = await processesOf(server);
  const url = server.url + path;
  const post = async () => {
    const res = await fetch(url, { method: "POST", body, headers: { "content-type": "application/json" } });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`POST ${url} answered ${res.status}: ${text.slice(0, 300)}`);
  };
  for (let i = 0; i < warm; i++) await post();
  const before = new Map(Object.entries(pids).map(([k, p]) => [k, threads(p)]));
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await post();
    ms.push(performance.now() - t0);
  }
  let total = 0;
  for (const [name, pid] of Object.entries(pids)) {
    let wakes = 0;
    let cpu = 0;
    const parts: string[] = [];
    for (const [tid, a] of threads(pid)) {
      const b = before.get(name)!.get(tid) ?? { switches: 0, cpuNs: 0 };
      const w = (a.switches - b.switches) / n;
      const c = (a.cpuNs - b.cpuNs) / 1000 / n;
      wakes += w;
      cpu += c;
      if (w >= 0.005) parts.push(`${a.name} ${w.toFixed(2)}/${c.toFixed(0)}µs`);
    }
    total += wakes;
    console.log(`${name.padEnd(18)} ${wakes.toFixed(2).padStart(6)} wake-ups ${cpu.toFixed(0).padStart(6)} µs CPU per request   [${parts.join(", ")}]`);
  }
  ms.sort((a, b) => a - b);
  const mean = ms.reduce((a, b) => a + b, 0) / n;
  console.log(`all processes: ${total.toFixed(2)} wake-ups per request; latency mean ${mean.toFixed(3)} ms, median ${ms[n >> 1]!.toFixed(3)} ms, p99 ${ms[Math.floor(n * 0.99)]!.toFixed(3)} ms`);
} finally {
  await server.stop();
}
