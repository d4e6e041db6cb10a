/**
 * `serve-bin replica --app A --deployment N --controller tcp://…`: one
 * replica of one deployment, run by a cluster engine (a Swarm task). It
 * dials the controller and keeps dialling; the controller's `start` (the
 * spec, userConfig included) constructs it, as the IPC spec does for a local
 * replica. While the controller is away it keeps serving with its last
 * routing snapshot; a restarted controller adopts it (same graph hash: it
 * catches up on userConfig and is ready at once; another hash: it drains and
 * exits, and its engine starts it afresh). SIGTERM drains it.
 */
import { deepEqual } from "../../config/diff.ts";
import { readEnv } from "../../config/env.ts";
import type { ControlFromReplica, ControlToReplica, ReplicaSpec } from "../../runtime/channel/messages.ts";
import { deliverControl, runReplica, useControlPort } from "../../runtime/replica/main.ts";
import { ControllerLink, type LinkMessage, type RunningReplica } from "../../cluster/control-link.ts";
import { parse, portOf, UsageError } from "../args.ts";
import { serveHealth } from "./health.ts";
import { tcpFlag } from "./flags.ts";

const USAGE =
  "serve-bin replica --app A --deployment N --controller tcp://HOST:7070 [--listen tcp://0.0.0.0:7000] [--health-host 0.0.0.0] [--health-port 8000] [--drain-timeout-s 20]";

const flags = {
  app: { type: "string" },
  deployment: { type: "string" },
  controller: { type: "string" },
  listen: { type: "string" },
  "health-host": { type: "string" },
  "health-port": { type: "string" },
  "drain-timeout-s": { type: "string" },
} as const;

function required(v: string | undefined, flag: string): string {
  if (!v) throw new UsageError(`${flag} is required\nusage: ${USAGE}`);
  return v;
}


/** Runs the replica role until it drains or its engine kills it. */
export async function replicaRole(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, flags, USAGE);
  if (positionals.length) throw new UsageError(`replica takes flags only, got "${positionals.join(" ")}"\nusage: ${USAGE}`);
  const app = required(values.app, "--app");
  const deployment = required(values.deployment, "--deployment");
  const controller = tcpFlag(required(values.controller, "--controller"), "--controller", USAGE);
  const listen = tcpFlag(values.listen ?? "tcp://0.0.0.0:7000", "--listen", USAGE);
  const drainS = Number(values["drain-timeout-s"] ?? 20);
  if (!(drainS >= 0 && drainS <= 3600)) throw new UsageError(`--drain-timeout-s takes seconds from 0 to 3600, not "${values["drain-timeout-s"]}"`);
  const { clusterToken: token, revision } = readEnv();
  if (!token) throw new UsageError("the replica role links over TCP and needs the cluster token: set SERVE_BIN_CLUSTER_TOKEN or SERVE_BIN_CLUSTER_TOKEN_FILE");

  let spec: ReplicaSpec | null = null;
  let running: RunningReplica | undefined;
  let hasRoutes = false;
  let draining = false;
  let routesVersion = 0;
  /** The userConfig the instance runs now, and reconfigures in flight by seq. */
  let applied: unknown;
  const asked = new Map<number, unknown>();
  let internalSeq = 0;
  const internal = new Map<number, (error?: unknown) => void>();

  const health = serveHealth(values["health-host"] ?? "0.0.0.0", portOf(values["health-port"], "--health-port", 8000), () => {
    if (draining) return "draining";
    if (!spec) return link.connected ? "waiting for the controller's start" : `waiting for the controller at ${controller}`;
    if (!running) return "constructing";
    if (!hasRoutes) return "no routing snapshot yet";
    return null;
  });

  console.log(`serve-bin: replica ${app}/${deployment} health on http://${health.hostname}:${health.port}, dialling ${controller}`);

  const link: ControllerLink = new ControllerLink(controller, { token }, (): LinkMessage => ({ t: "hello", role: "replica", app, deployment, pid: process.pid, running, revision }), (msg) => {
    if (msg.t === "to-replica") onControl(msg.m);
  }, (up) => console.log(up ? `serve-bin: linked to the controller at ${controller}` : `serve-bin: lost the controller at ${controller}; serving with the last routes`), (why) =>
    console.error(`serve-bin: cannot link to the controller: ${why}; trying again`),
  );

  const toController = (m: ControlFromReplica) => link.send({ t: "from-replica", m });
  useControlPort({
    send(m) {
      if (m.t === "ready" && spec) running = { replicaId: spec.replicaId, hash: spec.hash, address: m.socket };
      if (m.t === "done") {
        const mine = internal.get(m.seq);
        if (mine) return mine(m.error);
        if (!m.error && asked.has(m.seq)) applied = asked.get(m.seq);
        asked.delete(m.seq);
      }
      toController(m);
    },
    sigterm() {}, // this role takes SIGTERM itself, below
  });
  // Before the controller's start nothing runs: leave at once. After: out of the routes, drain, exit.
  process.on("SIGTERM", () => {
    if (!spec) process.exit(0);
    if (draining) return;
    draining = true;
    link.send({ t: "leaving" });
    deliverControl({ t: "drain", timeoutS: drainS });
  });

  function onControl(m: ControlToReplica): void {
    switch (m.t) {
      case "start":
        return void onStart(m.spec);
      case "routes":
        hasRoutes = true;
        // Versions are the controller's; a restarted controller counts from 1 again, so this process numbers them itself.
        return deliverControl({ ...m, table: { ...m.table, version: ++routesVersion } });
      case "reconfigure":
        asked.set(m.seq, m.userConfig);
        return deliverControl(m);
      case "drain":
        draining = true;
        return deliverControl(m);
      default:
        return deliverControl(m);
    }
  }

  async function onStart(next: ReplicaSpec): Promise<void> {
    if (!spec) {
      // Its own listen address, and no shared memory: its peers are on other hosts.
      spec = { ...next, socket: listen, sharedMemory: { ...next.sharedMemory, enabled: false } };
      applied = next.userConfig;
      await runReplica(spec, { token });
      return;
    }
    if (!running) return; // still constructing: its ready goes out when it is
    if (next.hash !== spec.hash) {
      // Exit 1: the engine's restart policy (on-failure) starts a fresh task, which the controller constructs.
      console.error(`serve-bin: the controller runs another graph (hash ${next.hash}, this replica ${spec.hash}); exiting so the engine starts a new one`);
      process.exit(1);
    }
    if (!deepEqual(next.userConfig, applied)) {
      const seq = -++internalSeq;
      const error = await new Promise((resolve) => {
        internal.set(seq, resolve);
        deliverControl({ t: "reconfigure", seq, userConfig: next.userConfig });
      });
      internal.delete(seq);
      if (error) return toController({ t: "failed", error: error as never });
      applied = next.userConfig;
    }
    toController({ t: "ready", socket: running.address });
  }

  process.on("exit", () => void health.stop(true));
  return -1; // keeps running: the drain or the engine ends the process
}
