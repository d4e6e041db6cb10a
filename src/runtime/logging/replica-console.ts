import { format } from "node:util";
import { currentRequestContext } from "../../api/request-context.ts";
import type { LoggingConfig } from "../../config/schema.ts";
import { jsonLine, shows, type LogFields, type LogLevel } from "./record.ts";

const METHODS: [keyof Console & ("debug" | "log" | "info" | "warn" | "error"), LogLevel][] = [
  ["debug", "debug"],
  ["log", "info"],
  ["info", "info"],
  ["warn", "warn"],
  ["error", "error"],
];

/**
 * Routes what a replica prints through console.* by the logging config:
 * below the level, dropped; in JSON, one object a line with the replica's
 * names and the current request's id (and trace id, when traced), handed to `emit` (the control channel,
 * so the server writes it whole, without the `[app/replica]` prefix it puts
 * on raw output). In text, printed as before.
 */
export function installReplicaConsole(cfg: LoggingConfig, who: LogFields, emit: (line: string) => void): void {
  for (const [method, level] of METHODS) {
    if (!shows(level, cfg.level)) {
      console[method] = () => {};
      continue;
    }
    if (cfg.format !== "json") continue;
    console[method] = (...args: unknown[]) => {
      const ctx = currentRequestContext();
      // traceparent is 00-<trace id>-<span id>-<flags>
      const fields = ctx ? { ...who, requestId: ctx.requestId, traceId: ctx.traceparent?.slice(3, 35) } : who;
      emit(jsonLine(level, format(...args), fields));
    };
  }
}
