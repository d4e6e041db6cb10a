/**
 * `serve-bin controller --config F --listen tcp://0.0.0.0:7070`: the one
 * controller of a cluster. It is `serve-bin run` — the same state machine,
 * change path and admin API — with a RemoteEngine in place of local
 * subprocesses: replicas and proxies dial its control address; with
 * `--engine swarm` it sets each deployment's Swarm service replica count
 * through the manager's Docker socket; with `--engine kubernetes` each
 * Deployment's `scale`, as the holder of the controller Lease (kubernetes.ts). Its routing snapshots go to the
 * proxies too. SIGTERM stops the controller alone: the links close, replicas
 * and proxies keep serving, and the next controller adopts them.
 */
import { readEnv } from "../../config/env.ts";
import { RemoteEngine, type Scaler } from "../../cluster/remote-engine.ts";
import { DockerApi } from "../../cluster/swarm/docker-api.ts";
import { SwarmScaler } from "../../cluster/swarm/swarm-scaler.ts";
import { KubernetesControl } from "./kubernetes.ts";
import type { Server } from "../../http/server.ts";
import { parse, UsageError } from "../args.ts";
import { runCommand } from "../run.ts";
import { serverLog } from "../server-log.ts";
import { withReadiness } from "./health.ts";
import { tcpFlag } from "./flags.ts";

const USAGE =
  "serve-bin controller --config serve.yaml [--listen tcp://0.0.0.0:7070] [--engine static|swarm|kubernetes] [--docker-socket /var/run/docker.sock] [--kube-api URL] [--kube-credentials DIR] [--state-dir DIR] [--app-dir DIR] [--host 0.0.0.0] [--port 8000] [--admin-host H] [--admin-port 8265] [--admin-token-file F]";

const flags = {
  config: { type: "string" },
  listen: { type: "string" },
  engine: { type: "string" },
  "docker-socket": { type: "string" },
  "kube-api": { type: "string" },
  "kube-credentials": { type: "string" },
  "state-dir": { type: "string" },
  "app-dir": { type: "string" },
  host: { type: "string" },
  port: { type: "string" },
  "admin-host": { type: "string" },
  "admin-port": { type: "string" },
  "admin-token-file": { type: "string" },
} as const;

/** How often the proxies' snapshot is compared with what they last got. */
const SNAPSHOT_EVERY_MS = 250;

/** Runs the controller role until SIGTERM. */
export async function controllerRole(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, flags, USAGE);
  if (positionals.length) throw new UsageError(`controller takes flags only, got "${positionals.join(" ")}"\nusage: ${USAGE}`);
  if (!values.config) throw new UsageError(`--config is required\nusage: ${USAGE}`);
  const listen = tcpFlag(values.listen ?? "tcp://0.0.0.0:7070", "--listen", USAGE);
  const kind = values.engine ?? "static";
  if (kind !== "static" && kind !== "swarm" && kind !== "kubernetes") throw new UsageError(`--engine takes static (replicas started by hand), swarm or kubernetes, not "${kind}"\nusage: ${USAGE}`);
  if ((values["kube-api"] || values["kube-credentials"]) && kind !== "kubernetes") throw new UsageError(`--kube-api and --kube-credentials are for --engine kubernetes\nusage: ${USAGE}`);
  const env = readEnv();
  if (!env.clusterToken) throw new UsageError("the controller role links over TCP and needs the cluster token: set SERVE_BIN_CLUSTER_TOKEN or SERVE_BIN_CLUSTER_TOKEN_FILE");
  // The scalers' lines carry the prefix serverLog adds.
  const info = (l: string) => serverLog("info", l.replace(/^serve-bin: /, ""));
  const kube = kind === "kubernetes" ? new KubernetesControl({ api: values["kube-api"], credentials: values["kube-credentials"], configFile: values.config, stateDir: values["state-dir"] }, env, info) : null;
  // Only the Lease holder acts; a second controller waits here, not ready, until the first is gone.
  await kube?.lead(() => process.kill(process.pid, "SIGTERM"));
  const scaler: Scaler | undefined = kind === "swarm" ? new SwarmScaler(new DockerApi(values["docker-socket"]), env.swarmStack ?? "", info) : (kube?.engine ?? undefined);
  const engine = new RemoteEngine(listen, { token: env.clusterToken }, scaler, kube?.eligible, kube?.rollout.appOf);
  serverLog("info", `control links on ${engine.address} (${kind} engine)`, {}, true);

  let server: Server | null = null;
  let stopping = false;
  let sent = "";
  const publish = () => {
    if (!server) return;
    // The start-up config is still being planned (in its own process): an empty snapshot now would make proxies ready with no routes, or wipe the routes they kept.
    if (server.changes.current.config.applications.length === 0 && server.opts.config.applications.length > 0) return;
    const snapshot = server.proxySnapshot();
    const sig = JSON.stringify(snapshot);
    kube?.tick();
    // A code rollout not set up yet: its new code would take the whole route before the split is in place.
    if (kube && !kube.rollout.decided()) return;
    if (sig === sent) return;
    sent = sig;
    engine.publish(snapshot);
  };
  const timer = setInterval(publish, SNAPSHOT_EVERY_MS);

  const run = ["--port", values.port ?? "8000", "--host", values.host ?? "0.0.0.0"];
  for (const f of ["state-dir", "app-dir", "admin-host", "admin-port", "admin-token-file"] as const) if (values[f] !== undefined) run.push(`--${f}`, values[f]!);
  const code = await runCommand([values.config, ...run], "run", {
    cluster: {
      engine,
      // The server keeps each application's table; the snapshot is read from it.
      onRoutes: () => queueMicrotask(publish),
    },
    wrapProxy: (listener) =>
      withReadiness(listener, () => {
        if (stopping) return "stopping";
        if (!server) return "starting";
        if (kube && !kube.rollout.decided()) return "setting up a code rollout";
        return server.healthy() ? null : "an application has no running ingress replica yet";
      }),
    started: (s) => {
      server = s;
      kube?.attach(s, engine);
      // Runs before run's own SIGTERM handler: the replicas must not drain with this process.
      const leave = () => {
        stopping = true;
        clearInterval(timer);
        engine.detach();
      };
      process.once("SIGTERM", leave);
      process.once("SIGINT", leave);
    },
  });
  clearInterval(timer);
  await kube?.stop();
  return code;
}
