import { readFileSync } from "node:fs";
import { availableParallelism, release } from "node:os";

/** What a result was measured on. */
export interface Machine {
  cpu: string;
  cores: number;
  bun: string;
  kernel: string;
  memoryGiB: number;
}

export function machine(): Machine {
  let cpu = "unknown";
  let memKiB = 0;
  try {
    cpu = /model name\s*:\s*(.+)/.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1]?.trim() ?? cpu;
    memKiB = Number(/MemTotal:\s*(\d+)/.exec(readFileSync("/proc/meminfo", "utf8"))?.[1] ?? 0);
  } catch {}
  return { cpu, cores: availableParallelism(), bun: Bun.version, kernel: release(), memoryGiB: Math.round((memKiB / 1024 / 1024) * 10) / 10 };
}
