/**
 * What a request leaves for the garbage collector, per process: serves a
 * graph (or config) with collection off (BUN_JSC_useGC=false) and the heap
 * probe on (src/runtime/heap-probe.ts), loads it with wrk, and prints, per
 * process, the objects each request left on the heap, by type, between two
 * snapshots around a measured run. With collection off nothing is freed, so
 * the difference is what the requests allocated (memory grows meanwhile:
 * about 1 GB for the default run). A diagnostic, not a scenario: nothing is
 * written to bench/results.
 *   bun bench/alloc-probe.ts TARGET [--path /p] [--body JSON] [--seconds 2] [--warm 3] [--top 12]
 *   bun bench/alloc-probe.ts bench/fixtures/noop.ts
 *   bun bench/alloc-probe.ts bench/fixtures/noop-ingress.yaml --top 20
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { processesOf } from "./lib/http-compare.ts";
import { loadGenerator } from "./lib/load.ts";
import { ProcessSet } from "./lib/procs.ts";
import { startServeBin } from "./lib/server.ts";
import { option } from "./lib/cli-option.ts";

interface Snapshot {
  objectTypeCounts: Record<string, number>;
}

const target = process.argv[2];
if (!target || target.startsWith("-")) {
  console.error("usage: bun bench/alloc-probe.ts TARGET [--path /p] [--body JSON] [--seconds 2] [--warm 3] [--top 12]");
  process.exit(2);
}
const path = option("--path", "");
const body = option("--body", JSON.stringify({ id: 7, text: "hello serve-bin", tags: ["a", "b"] }));
const seconds = Number(option("--seconds", "2"));
const warm = Number(option("--warm", "3"));
const top = Number(option("--top", "12"));
const dir = mkdtempSync(join(tmpdir(), "sb-alloc-"));
const procs = new ProcessSet();
const server = await startServeBin(procs, resolve(target), { env: { BUN_JSC_useGC: "false", SERVE_BIN_HEAP_PROBE_DIR: dir } });

/** Asks every process for its heap's counts and waits for all of them. */
async function snapshot(pids: Record<string, number>): Promise<Map<string, Snapshot>> {
  for (const pid of Object.values(pids)) rmSync(join(dir, `heap.${pid}.json`), { force: true });
  for (const pid of Object.values(pids)) process.kill(pid, "SIGUSR2");
  const out = new Map<string, Snapshot>();
  const deadline = performance.now() + 30_000;
  while (out.size < Object.keys(pids).length) {
    if (performance.now() > deadline) throw new Error(`no heap snapshot from ${Object.keys(pids).filter((k) => !out.has(k)).join(", ")} within 30 s`);
    for (const [name, pid] of Object.entries(pids)) {
      const file = join(dir, `heap.${pid}.json`);
      if (!out.has(name) && existsSync(file)) out.set(name, JSON.parse(readFileSync(file, "utf8")) as Snapshot);
    }
    await Bun.sleep(50);
  }
  return out;
}

try {
  const pids = await processesOf(server);
  const load = await loadGenerator(procs, (s) => console.error(s));
  const spec = { url: server.url + path, body, connections: 64, durationS: warm };
  const warmed = await load.run(spec);
  if (warmed.errors > 0) throw new Error(`${warmed.errors} of ${warmed.requests} warm-up requests failed: check --path and --body`);
  await Bun.sleep(500);
  const before = await snapshot(pids);
  const run = await load.run({ ...spec, durationS: seconds });
  await Bun.sleep(500);
  const after = await snapshot(pids);
  const n = run.requests;
  console.log(`${n} requests in ${seconds} s (${Math.round(run.rps)} req/s, ${run.errors} failed), with collection off; objects left per request:`);
  for (const name of Object.keys(pids)) {
    const a = before.get(name)!;
    const b = after.get(name)!;
    const all = Object.entries(b.objectTypeCounts).map(([type, count]) => [type, (count - (a.objectTypeCounts[type] ?? 0)) / n] as const);
    const total = all.reduce((sum, [, per]) => sum + per, 0);
    const rows = all.filter(([, per]) => per >= 0.05).sort((x, y) => y[1] - x[1]);
    console.log(`${name.padEnd(18)} ${total.toFixed(1).padStart(6)} objects: ${rows.slice(0, top).map(([t, per]) => `${t} ${per.toFixed(1)}`).join(", ")}`);
  }
} finally {
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
}
