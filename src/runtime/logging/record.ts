import type { LoggingConfig } from "../../config/schema.ts";

export type LogLevel = LoggingConfig["level"];

const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** Whether a line at `level` shows under the configured level. */
export function shows(level: LogLevel, threshold: LogLevel): boolean {
  return RANK[level] >= RANK[threshold];
}

/** Who a line is about: the replica it came from, the request it was printed in. */
export interface LogFields {
  app?: string;
  deployment?: string;
  replica?: string;
  requestId?: string;
  /** The W3C trace id, when the request is traced. */
  traceId?: string;
}

/**
 * One JSON log line (no newline): time, level, then where it comes from,
 * then the message, so `jq 'select(.deployment == "Model")'` works.
 *
 * @example
 * jsonLine("info", "ready in 412 ms", { app: "default" });
 * // {"time":"2026-11-29T20:01:02.003Z","level":"info","app":"default","msg":"ready in 412 ms"}
 */
export function jsonLine(level: LogLevel, msg: string, fields: LogFields = {}): string {
  const rec: Record<string, string> = { time: new Date().toISOString(), level };
  for (const k of ["app", "deployment", "replica", "requestId", "traceId"] as const) if (fields[k]) rec[k] = fields[k]!;
  rec.msg = msg;
  return JSON.stringify(rec);
}
