/**
 * The benchmark suite: every performance figure of SPEC §6, each measured
 * next to its baseline in the same run.
 *
 *   bun bench/main.ts                  everything (under 5 minutes on 2 cores)
 *   bun bench/main.ts hop tutorial     some scenarios
 *   bun bench/main.ts --quick …        a few seconds each (the test suite runs this)
 *   bun bench/main.ts --out DIR …      write DIR/<scenario>.json and DIR/RESULTS.md
 *                                      (default: bench/results/ and bench/RESULTS.md)
 *   bun bench/main.ts --wait-quiet …   before each scenario, wait (at most 2 minutes) until other
 *                                      processes use under 10% of the machine
 *   bun bench/main.ts --profile DIR …  every Bun process started writes a CPU profile to
 *                                      DIR/<scenario>/; prints where each one's time went
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { chain10 } from "./chain10.ts";
import { diamondPeer } from "./diamond-peer.ts";
import { ensemble10 } from "./ensemble10.ts";
import { hop } from "./hop.ts";
import { httpNoop } from "./http-noop.ts";
import { foreignLoad, machineBusyMs } from "./lib/cpu.ts";
import { machine } from "./lib/machine.ts";
import { BENCH } from "./lib/paths.ts";
import { pidLabels, ProcessSet } from "./lib/procs.ts";
import { summarizeProfile } from "./profile.ts";
import { renderResults } from "./lib/report.ts";
import { readResult, writeResult, type ScenarioResult } from "./lib/results.ts";
import type { Scenario } from "./lib/scenario.ts";
import { memory } from "./memory.ts";
import { payload } from "./payload.ts";
import { startup } from "./startup.ts";
import { tutorial } from "./tutorial.ts";
import { batching } from "./batch.ts";
import { ocr } from "./ocr.ts";
import { vad } from "./vad.ts";
import { observability } from "./observability.ts";
import { tcpHop } from "./tcp-hop.ts";

/** In the order they run and appear in RESULTS.md. */
export const SCENARIOS: Scenario[] = [hop, httpNoop, tutorial, diamondPeer, payload, startup, memory, chain10, ensemble10, batching, tcpHop, observability, vad, ocr];

const USAGE = `usage: bun bench/main.ts [--quick] [--wait-quiet] [--out DIR] [--profile DIR] [scenario ...]\nscenarios: ${SCENARIOS.map((s) => s.name).join(", ")}`;

function parseArgs(argv: string[]): { quick: boolean; waitQuiet: boolean; out: string | null; profile: string | null; names: string[] } {
  let quick = false;
  let waitQuiet = false;
  let out: string | null = null;
  let profile: string | null = null;
  const names: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--quick") quick = true;
    else if (a === "--wait-quiet") waitQuiet = true;
    else if (a === "--out") out = argv[++i] ?? null;
    else if (a === "--profile") profile = argv[++i] ?? null;
    else if (a === "--help" || a === "-h") {
      console.log(USAGE);
      process.exit(0);
    } else if (a.startsWith("-")) {
      console.error(`unknown flag ${a}\n${USAGE}`);
      process.exit(2);
    } else names.push(a);
  }
  for (const n of names) {
    if (!SCENARIOS.some((s) => s.name === n)) {
      console.error(`unknown scenario "${n}"\n${USAGE}`);
      process.exit(2);
    }
  }
  if (profile && !out) {
    console.error(`--profile slows every process down: give --out DIR too, so bench/results keeps unprofiled figures\n${USAGE}`);
    process.exit(2);
  }
  return { quick, waitQuiet, out, profile, names };
}

const { quick, waitQuiet, out, profile, names } = parseArgs(process.argv.slice(2));

/** Waits until the machine is quiet (this process is idle meanwhile, so all busy time is someone else's). */
async function waitForQuiet(maxS = 120): Promise<void> {
  const end = performance.now() + maxS * 1000;
  for (let announced = false; ; ) {
    const b0 = machineBusyMs();
    await Bun.sleep(1000);
    const share = (machineBusyMs() - b0) / 1000 / (navigator.hardwareConcurrency || 1);
    if (share < 0.1) return;
    if (performance.now() > end) return log(`the machine is still busy (${Math.round(share * 100)}%) after ${maxS} s; going ahead`);
    if (!announced) log(`waiting for the machine to be quiet (other processes use ${Math.round(share * 100)}%)`);
    announced = true;
  }
}
const resultsDir = out ?? join(BENCH, "results");
const resultsMd = out ? join(out, "RESULTS.md") : join(BENCH, "RESULTS.md");
const chosen = names.length ? SCENARIOS.filter((s) => names.includes(s.name)) : SCENARIOS;
const procs = new ProcessSet();
const log = (line: string) => console.log(`bench: ${line}`);

let interrupted = false;
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    if (interrupted) return;
    interrupted = true;
    log(`${sig}: stopping every process the bench started`);
    void procs.stopAll().then(() => process.exit(130));
  });
}

/** One block per profiled process: the share of its samples in each part of the system. */
function printProfiles(dir: string): void {
  if (!existsSync(dir)) return;
  for (const f of readdirSync(dir).filter((f) => f.endsWith(".cpuprofile")).sort()) {
    const pid = Number(/\.(\d+)\.\d+\.\d+\.cpuprofile$/.exec(f)?.[1]);
    const s = summarizeProfile(JSON.parse(readFileSync(join(dir, f), "utf8")));
    const top = s.byCategory.slice(0, 6).map(([c, n]) => `${Math.round((n / s.total) * 100)}% ${c}`);
    log(`  profile of pid ${pid} (${pidLabels.get(pid) ?? "?"}), ${s.total} samples: ${top.join("; ")}`);
  }
}

const mach = machine();
const t0 = performance.now();
let failed = 0;
for (const s of chosen) {
  if (interrupted) break;
  if (waitQuiet) await waitForQuiet();
  log(`${s.name}: ${s.title}${quick ? " (quick)" : ""}`);
  const started = performance.now();
  const before = procs.leftBehind.length;
  const load = foreignLoad();
  const profDir = profile ? join(profile, s.name) : null;
  if (profDir) process.env.BUN_OPTIONS = `--cpu-prof --cpu-prof-dir=${profDir}`;
  try {
    const m = await s.run({ quick, procs, log });
    await procs.stopAll();
    const foreign = load();
    const disturbed = foreign.share > 0.05
      ? [`other processes on the machine used ${foreign.foreignCpuS} CPU-s during this scenario (${Math.round(foreign.share * 100)}% of the machine): its figures are disturbed; rerun it on a quiet machine`]
      : [];
    const result: ScenarioResult = {
      scenario: s.name,
      title: s.title,
      date: new Date().toISOString(),
      quick,
      machine: mach,
      ...(m.generator ? { generator: m.generator } : {}),
      durationS: Math.round((performance.now() - started) / 100) / 10,
      method: m.method,
      rows: m.rows,
      series: m.series,
      foreignCpuShare: foreign.share,
      notes: [...m.notes, ...disturbed, ...(profDir ? [`profiled run (CPU profiles in ${profDir}): every figure is slowed by the profiler`] : []), ...procs.leftBehind.slice(before).map((l) => `left behind: ${l}`)],
    };
    writeResult(resultsDir, result);
    if (profDir) printProfiles(profDir);
    for (const r of result.rows) log(`  ${r.figure}: ${r.value ?? "pending"} ${r.unit}${r.baseline ? ` (baseline ${r.baseline.value} ${r.unit})` : ""} [${r.status}]`);
  } catch (e) {
    failed++;
    await procs.stopAll();
    console.error(`bench: ${s.name} failed: ${(e as Error).stack ?? e}`);
  }
}

const all = SCENARIOS.map((s) => readResult(resultsDir, s.name)).filter((r): r is ScenarioResult => r !== null);
writeFileSync(resultsMd, renderResults(all, SCENARIOS.map((s) => s.name)));
log(`wrote ${resultsMd} (${all.length} scenarios) in ${Math.round((performance.now() - t0) / 1000)} s`);
process.exit(failed ? 1 : 0);
