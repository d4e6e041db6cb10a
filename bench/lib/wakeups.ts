/**
 * Wake-ups of processes, from the kernel's count of voluntary context
 * switches (each one is a thread going to sleep, so each is followed by a
 * wake-up): summed over every thread of the process, read from
 * /proc/<pid>/task/<tid>/status.
 */
import { readdirSync, readFileSync } from "node:fs";

/** Voluntary context switches of every thread of `pid` so far (0 once it is gone). */
export function voluntarySwitches(pid: number): number {
  let sum = 0;
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        const m = /voluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/task/${tid}/status`, "utf8"));
        sum += Number(m?.[1] ?? 0);
      } catch {}
    }
  } catch {}
  return sum;
}

/** Counts the wake-ups of named processes inside measured windows. */
export class WakeupMeter {
  readonly totals: Record<string, number> = {};
  constructor(readonly pids: Record<string, number>) {}

  async measure<T>(fn: () => Promise<T>): Promise<T> {
    const before = Object.fromEntries(Object.entries(this.pids).map(([k, p]) => [k, voluntarySwitches(p)]));
    const out = await fn();
    for (const [k, p] of Object.entries(this.pids)) this.totals[k] = (this.totals[k] ?? 0) + voluntarySwitches(p) - before[k]!;
    return out;
  }

  /** Wake-ups per unit (request) of each process, and their sum. */
  perUnit(units: number): Record<string, number> {
    const out: Record<string, number> = {};
    let sum = 0;
    for (const [k, n] of Object.entries(this.totals)) {
      out[k] = Math.round((n / units) * 100) / 100;
      sum += n;
    }
    out.total = Math.round((sum / units) * 100) / 100;
    return out;
  }
}
