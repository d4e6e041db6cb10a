import type { LoggingConfig } from "../config/schema.ts";
import { jsonLine, shows, type LogFields, type LogLevel } from "../runtime/logging/record.ts";

let config: LoggingConfig = { format: "text", level: "info" };

/** Sets how the server's own lines are written (from the config's `logging`). */
export function configureServerLog(c: LoggingConfig): void {
  config = c;
}

/**
 * One line of the server's own: `serve-bin: <msg>` in text, a JSON object in
 * json; errors go to stderr, the rest to stdout. `always`: shown whatever
 * the level (where the server listens and that it is ready, which scripts
 * and `--port 0` users read).
 */
export function serverLog(level: LogLevel, msg: string, fields: LogFields = {}, always = false): void {
  if (!always && !shows(level, config.level)) return;
  const out = level === "error" ? process.stderr : process.stdout;
  out.write(config.format === "json" ? `${jsonLine(level, msg, fields)}\n` : `serve-bin: ${msg}\n`);
}

/** A block that follows a line (a user's stack): indented as is in text, its own record in json. */
export function serverDetail(level: LogLevel, text: string, fields: LogFields = {}): void {
  if (!shows(level, config.level)) return;
  if (config.format === "json") process.stdout.write(`${jsonLine(level, text, fields)}\n`);
  else process.stdout.write(`${text.replace(/^/gm, "    ")}\n`);
}

/** Writes a replica's JSON line as it came. */
export function writeReplicaLine(line: string): void {
  process.stdout.write(`${line}\n`);
}
