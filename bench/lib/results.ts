/** The shape of bench/results/<scenario>.json, its writer and its checker. */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Machine } from "./machine.ts";

/** met / not met against SPEC §6; pending: cannot be measured yet; info: no target. */
export type RowStatus = "met" | "not met" | "pending" | "info";
export const ROW_STATUSES: readonly RowStatus[] = ["met", "not met", "pending", "info"];

/** One line of the RESULTS.md table. */
export interface Row {
  id: string;
  figure: string;
  unit: string;
  /** null only when pending. */
  value: number | null;
  baseline: { label: string; value: number | null } | null;
  /** value ÷ baseline (or as the row's note says). */
  ratio: number | null;
  /** The SPEC §6 target, in its words; null for a figure without one. */
  target: string | null;
  status: RowStatus;
  note?: string;
}

export interface ScenarioResult {
  scenario: string;
  title: string;
  /** ISO date of the run. */
  date: string;
  quick: boolean;
  machine: Machine;
  /** The HTTP load generator, for the scenarios that use one. */
  generator?: string;
  durationS: number;
  /** Share of the machine's CPU that processes outside the bench used while the scenario ran (0–1). */
  foreignCpuShare: number;
  /** What was measured and how, in a sentence or two. */
  method: string;
  rows: Row[];
  /** Raw summaries (median, p99, …) of each measured series. */
  series: Record<string, unknown>;
  notes: string[];
}

export function writeResult(dir: string, r: ScenarioResult): string {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${r.scenario}.json`);
  writeFileSync(`${file}.tmp`, JSON.stringify(r, null, 2) + "\n");
  renameSync(`${file}.tmp`, file);
  return file;
}

export function readResult(dir: string, scenario: string): ScenarioResult | null {
  const file = join(dir, `${scenario}.json`);
  return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as ScenarioResult) : null;
}

const isNum = (v: unknown) => typeof v === "number" && Number.isFinite(v);

/** Problems with a result file's shape (empty when it is complete and well-formed). */
export function checkResult(r: unknown, scenario?: string): string[] {
  const p: string[] = [];
  const o = r as Partial<ScenarioResult>;
  if (typeof o !== "object" || o === null) return ["not an object"];
  if (typeof o.scenario !== "string" || (scenario && o.scenario !== scenario)) p.push(`scenario is ${JSON.stringify(o.scenario)}`);
  for (const k of ["title", "date", "method"] as const) if (typeof o[k] !== "string" || !o[k]) p.push(`${k} missing`);
  if (typeof o.date === "string" && Number.isNaN(Date.parse(o.date))) p.push("date is not a date");
  if (typeof o.quick !== "boolean") p.push("quick missing");
  if (!isNum(o.durationS)) p.push("durationS missing");
  if (!isNum(o.foreignCpuShare)) p.push("foreignCpuShare missing");
  const m = o.machine;
  if (!m || typeof m.cpu !== "string" || !isNum(m.cores) || typeof m.bun !== "string") p.push("machine incomplete");
  if (!Array.isArray(o.notes)) p.push("notes missing");
  if (typeof o.series !== "object" || o.series === null) p.push("series missing");
  if (!Array.isArray(o.rows) || o.rows.length === 0) return [...p, "no rows"];
  for (const [i, row] of o.rows.entries()) {
    const at = `rows[${i}] (${row?.id})`;
    if (typeof row.id !== "string" || !row.id.startsWith(`${o.scenario}.`)) p.push(`${at}: id must start with "${o.scenario}."`);
    if (typeof row.figure !== "string" || !row.figure) p.push(`${at}: figure missing`);
    if (typeof row.unit !== "string") p.push(`${at}: unit missing`);
    if (!ROW_STATUSES.includes(row.status)) p.push(`${at}: status ${row.status}`);
    if (row.status === "pending" ? row.value !== null && !isNum(row.value) : !isNum(row.value)) p.push(`${at}: value ${row.value}`);
    if (row.baseline !== null && (typeof row.baseline?.label !== "string" || !(row.baseline.value === null || isNum(row.baseline.value)))) p.push(`${at}: baseline malformed`);
    if (!(row.ratio === null || isNum(row.ratio))) p.push(`${at}: ratio ${row.ratio}`);
    if (!(row.target === null || typeof row.target === "string")) p.push(`${at}: target malformed`);
    if ((row.status === "met" || row.status === "not met") && !row.target) p.push(`${at}: judged without a target`);
  }
  return p;
}
