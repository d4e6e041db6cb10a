/**
 * `serve-bin proxy --controller tcp://… --port 8000`: the HTTP ingress of a
 * cluster, one of N. It routes by the controller's snapshots, sent over its
 * control link; while the controller is away it keeps the last one (and, on
 * Swarm, refreshes replicas from `tasks.<service>` DNS). SIGTERM: stops
 * taking requests, lets those in flight answer, exits.
 */
import { readEnv } from "../../config/env.ts";
import { proxyConfigSchema, type ProxyConfig } from "../../config/schema.ts";
import { createProxy } from "../../http/proxy.ts";
import { RequestMetrics } from "../../http/request-metrics.ts";
import { ControllerLink } from "../../cluster/control-link.ts";
import { ProxyRoutes } from "../../cluster/proxy-routes.ts";
import { DnsFallback } from "../../cluster/swarm/dns-routes.ts";
import { serviceName, SWARM_PATHS } from "../swarm-stack.ts";
import { parse, portOf, UsageError } from "../args.ts";
import { loadTarget } from "../load-target.ts";
import { serverLog } from "../server-log.ts";
import { withReadiness } from "./health.ts";
import { tcpFlag } from "./flags.ts";

const USAGE = "serve-bin proxy --controller tcp://HOST:7070 [--config serve.yaml] [--host 0.0.0.0] [--port 8000] [--dns-fallback]";

const flags = {
  controller: { type: "string" },
  config: { type: "string" },
  host: { type: "string" },
  port: { type: "string" },
  "dns-fallback": { type: "boolean" },
} as const;

/** Runs the proxy role until SIGTERM. */
export async function proxyRole(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, flags, USAGE);
  if (positionals.length) throw new UsageError(`proxy takes flags only, got "${positionals.join(" ")}"\nusage: ${USAGE}`);
  if (!values.controller) throw new UsageError(`--controller is required\nusage: ${USAGE}`);
  const controller = tcpFlag(values.controller, "--controller", USAGE);
  const env = readEnv();
  const token = env.clusterToken;
  if (!token) throw new UsageError("the proxy role links over TCP and needs the cluster token: set SERVE_BIN_CLUSTER_TOKEN or SERVE_BIN_CLUSTER_TOKEN_FILE");
  // The proxy section of the stack's config (timeouts, body limits); the applications come from the controller.
  const proxy: ProxyConfig = values.config ? loadTarget(values.config, env).config.proxy : proxyConfigSchema().parse({ errorDetail: env.errorDetail });
  proxy.host = values.host ?? proxy.host;
  proxy.port = portOf(values.port, "--port", proxy.port);

  const routes = new ProxyRoutes({ token });
  const dns = values["dns-fallback"]
    ? new DnsFallback({
        tables: () => routes.snapshot?.apps.map((a) => ({ app: a.name, table: a.table })) ?? [],
        put: (app, table) => routes.replaceTable(app, table),
        nameOf: (app, d) => `tasks.${serviceName(app, d)}`,
        port: SWARM_PATHS.replicaPort,
      })
    : null;
  let draining = false;
  const link = new ControllerLink(controller, { token }, () => ({ t: "hello", role: "proxy" }), (msg) => {
    if (msg.t === "snapshot") routes.apply(msg.snapshot);
  }, (up) => {
    serverLog(up ? "info" : "warn", up ? `linked to the controller at ${controller}` : `lost the controller at ${controller}; routing by the last snapshot`);
    dns?.controllerUp(up);
  }, (why) => serverLog("warn", `cannot link to the controller: ${why}; trying again`));
  const listener = createProxy({ routes: routes.routes, metrics: new RequestMetrics(), healthy: () => routes.serving() }, proxy);
  const http = Bun.serve({
    hostname: proxy.host,
    port: proxy.port,
    ...withReadiness(listener, () => {
      if (draining) return "draining";
      if (!routes.snapshot) return link.connected ? "waiting for the first routing snapshot" : `waiting for the controller at ${controller}`;
      if (!routes.serving()) return "an application has no serving ingress replica";
      return null;
    }),
  });
  serverLog("info", `proxy listening on http://${proxy.host}:${http.port}`, {}, true);
  const stop = async () => {
    if (draining) return;
    draining = true;
    serverLog("info", "draining and shutting down");
    await Promise.race([http.stop(false), Bun.sleep(proxy.shutdownTimeoutS * 1000)]);
    link.stop();
    dns?.stop();
    routes.close();
    process.exit(0);
  };
  process.once("SIGTERM", () => void stop());
  process.once("SIGINT", () => void stop());
  return -1;
}
