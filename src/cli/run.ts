import { isLoopback } from "../http/admin-guard.ts";
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { ServeError } from "../error.ts";
import { readEnv } from "../config/env.ts";
import { parseConfig, type ServeConfig } from "../config/schema.ts";
import type { ControllerEvent } from "../runtime/control/status.ts";
import { startAdmin } from "../http/admin.ts";
import { Server, type ServerOptions } from "../http/server.ts";
import { configureServerLog, serverDetail, serverLog, writeReplicaLine } from "./server-log.ts";
import { adminToken, parse, portOf, tokenFlags, UsageError } from "./args.ts";
import { loadTarget } from "./load-target.ts";
import { installHeapProbe } from "../runtime/heap-probe.ts";

const USAGE = "serve-bin run <graph.ts[:export] | config.yaml> [--host H] [--port 8000] [--admin-host H] [--admin-port 8265] [--admin-token-file F] [--route-prefix /p] [--state-dir DIR] [--app-dir DIR]";
const START_USAGE = "serve-bin start [--host H] [--port 8000] [--admin-host H] [--admin-port 8265] [--admin-token-file F] [--state-dir DIR] [--app-dir DIR]";

const flags = {
  host: { type: "string" },
  port: { type: "string" },
  "admin-host": { type: "string" },
  "admin-port": { type: "string" },
  ...tokenFlags,
  "route-prefix": { type: "string" },
  "state-dir": { type: "string" },
  "app-dir": { type: "string" },
} as const;


function log(line: string, e?: ControllerEvent): void {
  serverLog(e?.kind === "replica-failed" || e?.kind === "replica-died" ? "warn" : "info", line, e ? { app: e.app, deployment: e.deployment, replica: e.replica } : {});
}

const stackShown = new Set<string>();

function progress(e: ControllerEvent): void {
  const who = e.replica ? `${e.app}/${e.replica}` : e.app;
  switch (e.kind) {
    case "replica-starting":
      return log(`${who} starting`, e);
    case "replica-running":
      return log(`${who} running`, e);
    case "replica-failed": {
      log(`${who} failed: ${e.message}`, e);
      // The user's stack once per deployment: enough to find the line, without a wall of repeats.
      const key = `${e.app}/${e.deployment}`;
      if (e.stack && !stackShown.has(key)) {
        stackShown.add(key);
        serverDetail("warn", e.stack, { app: e.app, deployment: e.deployment, replica: e.replica });
      }
      return;
    }
    case "replica-died":
      return log(`${who} died (${e.message}); restarting`, e);
    case "replica-replaced":
      return log(`${who} is being replaced: ${e.message}`, e);
    case "replica-stopped":
      return;
    case "app-status":
      return log(`application ${e.app} ${e.message}`, e);
  }
}

interface Saved {
  baseDir: string;
  config: unknown;
  source?: string;
}

function readState(dir: string | undefined): Saved | null {
  if (!dir) return null;
  const file = join(dir, "config.json");
  if (!existsSync(file)) return null;
  return JSON.parse(readFileSync(file, "utf8")) as Saved;
}

/** What the cluster controller role adds to `run`: its engine, its `/-/ready`, and a look at the server once it exists. */
export interface RunExtras extends Pick<ServerOptions, "cluster" | "wrapProxy"> {
  started?(server: Server, stop: () => Promise<void>): void;
}

/** `serve-bin run` and `serve-bin start`: the server in the foreground. */
export async function runCommand(argv: string[], mode: "run" | "start", extras: RunExtras = {}): Promise<number> {
  const { values, positionals } = parse(argv, flags, mode === "run" ? USAGE : START_USAGE);
  const env = readEnv();
  let config: ServeConfig;
  let baseDir: string;
  if (mode === "run") {
    if (positionals.length !== 1) throw new UsageError(`run takes one graph module or config file\nusage: ${USAGE}`);
    ({ config, baseDir } = loadTarget(positionals[0]!, env));
  } else {
    if (positionals.length) throw new UsageError(`start takes no target; deploy one later with serve-bin deploy\nusage: ${START_USAGE}`);
    const empty = parseConfig({}, env);
    if (!empty.ok) throw new UsageError(empty.issues.map((i) => i.message).join("; "));
    config = empty.value;
    baseDir = process.cwd();
  }
  const saved = readState(values["state-dir"]);
  if (saved) {
    const restored = parseConfig(saved.config, env);
    if (restored.ok) {
      log(`restoring the applied config from ${values["state-dir"]}`);
      config = restored.value;
      baseDir = saved.baseDir;
    }
  }
  config.proxy.host = values.host ?? config.proxy.host;
  config.proxy.port = portOf(values.port, "--port", config.proxy.port);
  config.admin.host = values["admin-host"] ?? config.admin.host;
  config.admin.port = portOf(values["admin-port"], "--admin-port", config.admin.port);
  if (values["route-prefix"] !== undefined) {
    if (config.applications.length !== 1) throw new UsageError("--route-prefix applies to a single application; set routePrefix per application in the config file");
    const p = parseConfig({ ...config, applications: [{ ...config.applications[0]!, routePrefix: values["route-prefix"] }] }, env);
    if (!p.ok) throw new UsageError(`--route-prefix: ${p.issues.map((i) => i.message).join("; ")}`);
    config = p.value;
  }
  const token = adminToken(values, env.adminToken, (line) => process.stderr.write(`${line}\n`));
  if (!isLoopback(config.admin.host) && !token) {
    throw new UsageError(`the admin API would listen on ${config.admin.host} without a token; set --admin-token-file (or SERVE_BIN_ADMIN_TOKEN), or keep admin.host on 127.0.0.1`);
  }
  const appDir = resolve(values["app-dir"] ?? baseDir);

  configureServerLog(config.logging);
  // Replicas inherit this process's environment: that is how they learn the logging and tracing config.
  process.env.SERVE_BIN_LOG_FORMAT = config.logging.format;
  process.env.SERVE_BIN_LOG_LEVEL = config.logging.level;
  if (config.tracing.otlpEndpoint) {
    process.env.SERVE_BIN_OTLP_ENDPOINT = config.tracing.otlpEndpoint;
    process.env.SERVE_BIN_TRACE_SAMPLE_RATIO = String(config.tracing.sampleRatio);
  }
  const { started, ...cluster } = extras;
  const server = await Server.start({ config, baseDir, appDir, stateDir: values["state-dir"], onEvent: progress, replicaLog: writeReplicaLine, ...cluster });
  let stopping: Promise<void> | null = null;
  let stopped!: () => void;
  const done = new Promise<void>((r) => (stopped = r));
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      log("draining and shutting down");
      await admin.stop();
      await server.stop();
      log("stopped");
      stopped();
    })());
  const admin = startAdmin(server, {
    host: config.admin.host,
    port: config.admin.port,
    token,
    onShutdown: () => void stop(),
    errorDetail: config.proxy.errorDetail,
    bodyTimeoutS: config.proxy.bodyTimeoutS,
    maxConnections: config.proxy.maxConnections,
    metrics: server.metrics,
    graph: (app) => server.controller.apps.get(app)?.planned.graph.view,
  });
  started?.(server, stop);
  process.once("SIGINT", () => void stop());
  process.once("SIGTERM", () => void stop());
  installHeapProbe();
  serverLog("info", `listening on ${server.url} (admin API on ${admin.url})`, {}, true);
  try {
    const t0 = performance.now();
    // A signal (or POST /api/shutdown) during start-up stops the server while apply() still
    // waits for applications that will never run: stop waiting then, and exit 0 like any stop.
    const applying = server.apply(config);
    applying.catch(() => {});
    if ((await Promise.race([applying.then(() => "ready" as const), done.then(() => "stopped" as const)])) === "stopped") return 0;
    for (const app of server.appliedConfig().applications) serverLog("info", `serving ${app.name} at ${server.url}${app.routePrefix === "/" ? "/" : app.routePrefix}`, { app: app.name }, true);
    if (config.applications.length) serverLog("info", `ready in ${Math.round(performance.now() - t0)} ms`, {}, true);
  } catch (e) {
    if (stopping) {
      await stopping; // stopped by a signal mid-start: the failure is the stop's doing
      return 0;
    }
    const err = e as ServeError;
    serverLog("error", err.causeStack ? `${err.message}\n${err.causeStack}` : err.message);
    // SPEC §8: one application that cannot start does not take the others down.
    const serving = Object.entries(server.status().applications).filter(([, a]) => a.status === "RUNNING");
    if (err instanceof ServeError && err.code === "unavailable" && serving.length) {
      for (const [name] of serving) log(`serving ${name}; see serve-bin status for the applications that failed`);
      await done;
      return 0;
    }
    await stop();
    return err instanceof ServeError && (err.code === "invalid" || err.code === "build") ? 2 : 1;
  }
  await done;
  return 0;
}
