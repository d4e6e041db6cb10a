/**
 * Wake-ups and CPU time of processes: wake-ups from the kernel's count of
 * voluntary context switches (each one is a thread going to sleep, so each is
 * followed by a wake-up), CPU time from the scheduler's run time; both summed
 * over every thread of the process, read from /proc/<pid>/task/<tid>/.
 */
import { readdirSync, readFileSync } from "node:fs";

/** Voluntary context switches and nanoseconds on a CPU of every thread of `pid` so far (0 once it is gone). */
export function threadTotals(pid: number): { switches: number; cpuNs: number } {
  let switches = 0;
  let cpuNs = 0;
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        const m = /voluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/task/${tid}/status`, "utf8"));
        switches += Number(m?.[1] ?? 0);
        cpuNs += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0] ?? 0);
      } catch {}
    }
  } catch {}
  return { switches, cpuNs };
}

/** Counts the wake-ups and CPU time of named processes inside measured windows. */
export class WakeupMeter {
  readonly totals: Record<string, number> = {};
  readonly cpuNs: Record<string, number> = {};
  constructor(readonly pids: Record<string, number>) {}

  async measure<T>(fn: () => Promise<T>): Promise<T> {
    const before = Object.fromEntries(Object.entries(this.pids).map(([k, p]) => [k, threadTotals(p)]));
    const out = await fn();
    for (const [k, p] of Object.entries(this.pids)) {
      const after = threadTotals(p);
      this.totals[k] = (this.totals[k] ?? 0) + after.switches - before[k]!.switches;
      this.cpuNs[k] = (this.cpuNs[k] ?? 0) + after.cpuNs - before[k]!.cpuNs;
    }
    return out;
  }

  /** Wake-ups per unit (request) of each process, and their sum. */
  perUnit(units: number): Record<string, number> {
    return perUnit(this.totals, units, 1, 100);
  }

  /** CPU µs per unit (request) of each process, and their sum. */
  cpuPerUnitUs(units: number): Record<string, number> {
    return perUnit(this.cpuNs, units, 1000, 10);
  }
}

function perUnit(totals: Record<string, number>, units: number, divisor: number, scale: number): Record<string, number> {
  const out: Record<string, number> = {};
  let sum = 0;
  for (const [k, n] of Object.entries(totals)) {
    out[k] = Math.round((n / divisor / units) * scale) / scale;
    sum += n;
  }
  out.total = Math.round((sum / divisor / units) * scale) / scale;
  return out;
}
