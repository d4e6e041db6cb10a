/** What a scenario file exports, and small helpers to build its rows. */
import type { ProcessSet } from "./procs.ts";
import type { Row, RowStatus, ScenarioResult } from "./results.ts";
import { round } from "./stats.ts";

export interface Ctx {
  /** A few seconds per scenario, to keep the harness working; figures are indicative only. */
  quick: boolean;
  procs: ProcessSet;
  log(line: string): void;
}

/** What a scenario measured; the runner adds date, machine, duration. */
export type Measured = Pick<ScenarioResult, "rows" | "series" | "notes" | "method"> & { generator?: string };

export interface Scenario {
  name: string;
  title: string;
  run(ctx: Ctx): Promise<Measured>;
}

export interface RowSpec {
  id: string;
  figure: string;
  unit: string;
  value: number | null;
  baseline?: { label: string; value: number | null } | null;
  /** Defaults to value ÷ baseline. */
  ratio?: number | null;
  target?: string | null;
  /** Whether the target is met; undefined for a figure without a target. */
  met?: boolean | null;
  note?: string;
  digits?: number;
}

export function row(s: RowSpec): Row {
  const b = s.baseline ?? null;
  const ratio = s.ratio !== undefined ? s.ratio : s.value !== null && b?.value ? s.value / b.value : null;
  let status: RowStatus;
  if (s.value === null || s.met === null) status = "pending";
  else if (!s.target) status = "info";
  else status = s.met ? "met" : "not met";
  const d = s.digits ?? 3;
  return {
    id: s.id,
    figure: s.figure,
    unit: s.unit,
    value: s.value === null ? null : round(s.value, d),
    baseline: b && { label: b.label, value: b.value === null ? null : round(b.value, d) },
    ratio: ratio === null ? null : round(ratio, 3),
    target: s.target ?? null,
    status,
    ...(s.note ? { note: s.note } : {}),
  };
}

/** Runs `a` and `b` in alternating rounds so drift (heat, other load) hits both alike. */
export async function alternate(rounds: number, a: (round: number) => Promise<void>, b: (round: number) => Promise<void>): Promise<void> {
  for (let i = 0; i < rounds; i++) {
    if (i % 2 === 0) {
      await a(i);
      await b(i);
    } else {
      await b(i);
      await a(i);
    }
  }
}

/** Runs `call(i)` `n` times in sequence, pushing each round trip's µs onto `samples`. */
export async function timeCalls(n: number, call: (i: number) => Promise<unknown>, samples: number[]): Promise<void> {
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await call(i);
    samples.push((performance.now() - t0) * 1000);
  }
}
