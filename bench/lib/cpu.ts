/** CPU time of processes, from /proc/<pid>/stat (user + system), to say where a scenario's time goes. */
import { readFileSync } from "node:fs";

const TICK_MS = 1000 / (Number(Bun.spawnSync(["getconf", "CLK_TCK"]).stdout.toString().trim()) || 100);

/** User + system CPU time of `pid` so far, in ms (0 once it is gone). */
export function cpuMs(pid: number): number {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) * TICK_MS; // fields 14 and 15 of stat: utime, stime
  } catch {
    return 0;
  }
}

/** Accumulates the CPU time that named processes spend inside measured windows. */
export class CpuMeter {
  readonly totals: Record<string, number> = {};
  constructor(readonly pids: Record<string, number>) {}

  async measure<T>(fn: () => Promise<T>): Promise<T> {
    const before = Object.fromEntries(Object.entries(this.pids).map(([k, p]) => [k, cpuMs(p)]));
    const out = await fn();
    for (const [k, p] of Object.entries(this.pids)) this.totals[k] = (this.totals[k] ?? 0) + cpuMs(p) - before[k]!;
    return out;
  }

  /** µs of CPU per unit (request) for each process, and their sum. */
  perUnitUs(units: number): Record<string, number> {
    const out: Record<string, number> = {};
    let sum = 0;
    for (const [k, ms] of Object.entries(this.totals)) {
      out[k] = Math.round(((ms * 1000) / units) * 10) / 10;
      sum += ms;
    }
    out.total = Math.round(((sum * 1000) / units) * 10) / 10;
    return out;
  }
}

/** Busy CPU time of the whole machine so far (all cores), in ms, from /proc/stat. */
export function machineBusyMs(): number {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = f as number[];
  return (user! + nice! + system! + irq! + softirq! + steal!) * TICK_MS;
}

/** CPU time of this process and of every child it has reaped (their children included once reaped), in ms. */
export function ownTreeMs(): number {
  const text = readFileSync("/proc/self/stat", "utf8");
  const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) * TICK_MS;
}

/**
 * How much CPU other processes on the machine took while a scenario ran: the
 * machine's busy time minus this process tree's. On a small shared machine,
 * a large share means the figures were disturbed.
 */
export function foreignLoad(): () => { wallS: number; foreignCpuS: number; share: number } {
  const t0 = performance.now();
  const busy0 = machineBusyMs();
  const own0 = ownTreeMs();
  return () => {
    const wallS = (performance.now() - t0) / 1000;
    const foreignCpuS = Math.max(0, (machineBusyMs() - busy0 - (ownTreeMs() - own0)) / 1000);
    const cores = navigator.hardwareConcurrency || 1;
    return { wallS, foreignCpuS: Math.round(foreignCpuS * 10) / 10, share: Math.round((foreignCpuS / (wallS * cores)) * 1000) / 1000 };
  };
}
