import { readFileSync } from "node:fs";
import { ServeError } from "../../error.ts";
import { setAdmissionLimit } from "../../api/batch.ts";
import { instantiate, warmUp, type Callable } from "../../graph/instantiate.ts";
import { listenLink, type LinkListener, type LinkOptions } from "../channel/transport.ts";
import type { ControlFromReplica, ControlToReplica, DataMessage, DataPlaneListen, ProxySnapshot, ReplicaSpec } from "../channel/messages.ts";
import type { Connection } from "../channel/connection.ts";
import type { HttpCounts } from "../metrics/http-counts.ts";
import { SharedMemory } from "../channel/shm-channel.ts";
import { loadGraph } from "../load-graph.ts";
import { RemoteInvoker } from "../remote-invoker.ts";
import { ColocatingInvoker } from "../colocating-invoker.ts";
import { ReplicaServer } from "./server.ts";
import { LocalIngress } from "./local-ingress.ts";
import { Deadline, Farewell } from "./farewell.ts";
import { replicaStats } from "../metrics/replica-stats.ts";
import { observeBatches } from "../../api/batch.ts";
import { readEnv } from "../../config/env.ts";
import { installReplicaConsole } from "../logging/replica-console.ts";
import { setProcessTracer, Tracer } from "../tracing/tracer.ts";
import { installHeapProbe } from "../heap-probe.ts";

/** How often a replica pushes its counters to the main process. */
const METRICS_EVERY_MS = 1000;
/** How often a replica looks whether its ongoing count changed (and then reports it). */
const LOAD_EVERY_MS = 500;

/**
 * Where control messages go and how SIGTERM is taken: the IPC channel to the
 * parent server by default; a replica run by a cluster engine (src/cli/roles)
 * puts its control link in its place with `useControlPort`.
 */
export interface ControlPort {
  send(msg: ControlFromReplica): void;
  /** SIGTERM; by default the process exits at once (its server drains it first). */
  sigterm?(): void;
}

let port: ControlPort = { send: (msg) => void process.send?.(msg) };

/** Replaces the IPC control channel (call before `runReplica`); feed what arrives to `deliverControl`. */
export function useControlPort(p: ControlPort): void {
  port = p;
}

function send(msg: ControlFromReplica): void {
  port.send(msg);
}

function fail(e: unknown, deployment: string): never {
  const err = ServeError.fromUser(e, deployment);
  send({ t: "failed", error: err.toJSON() });
  // Give the IPC message time to leave before exiting.
  setTimeout(() => process.exit(1), 50);
  throw err;
}

/** What an ingress replica's data-plane listener is given (it is composed above the runtime: src/cli/ingress-listener.ts). */
export interface DataPlaneContext {
  spec: ReplicaSpec;
  listen: DataPlaneListen;
  /** This replica's ingress, called in process. */
  local: LocalIngress;
  /** This replica's data socket (left out of its own siblings). */
  socket: string;
  shm: SharedMemory;
  links: LinkOptions;
  send(msg: ControlFromReplica): void;
}

/** An ingress replica's data-plane listener, as the replica drives it. */
export interface DataPlane {
  /** A new routing snapshot; the first opens the listener. */
  routes(snapshot: ProxySnapshot): void;
  /** Stops taking connections at once; resolves once the requests it holds are answered (at most `timeoutS`). */
  stop(timeoutS: number): Promise<void>;
  /** The HTTP requests it answered, for the metrics snapshot. */
  counts(): HttpCounts;
}

/** What the entry point adds to a replica: the data-plane listener, for proxy.location "ingress". */
export interface ReplicaHooks {
  dataPlane?: (ctx: DataPlaneContext) => DataPlane;
}

/** Control messages that arrived before the replica was ready to obey them. */
const early: ControlToReplica[] = [];
let obey: ((msg: ControlToReplica) => void) | null = null;

/**
 * The spec arrives as the first control message; later ones wait until
 * `runReplica` obeys them. One listener for the process's life: Bun stops
 * reading IPC when the last "message" listener goes.
 */
export function receiveSpec(): Promise<ReplicaSpec> {
  process.on("disconnect", () => process.exit(0));
  return new Promise((resolve) => {
    process.on("message", (raw) => {
      const msg = raw as ControlToReplica;
      if (msg.t === "start") return resolve(msg.spec);
      deliverControl(msg);
    });
  });
}

/** A control message for this replica: obeyed now, or once `runReplica` is ready to. */
export function deliverControl(msg: ControlToReplica): void {
  if (obey) obey(msg);
  else early.push(msg);
}

/** Refuses to run code that changed on disk after the deployment was planned: it would differ from its peers. */
function checkFileUnchanged(spec: ReplicaSpec): void {
  if (!spec.fileHash) return;
  const now = Bun.hash(readFileSync(spec.modulePath)).toString(36);
  if (now === spec.fileHash) return;
  throw new ServeError(
    "build",
    `${spec.modulePath} changed on disk since ${spec.app} was deployed; this replica would run other code than its peers, so it does not start. Roll the new code out with serve-bin deploy (or PUT /api/applications), or put the file back`,
    { deployment: spec.deployment },
  );
}

/**
 * A replica process: imports the graph module itself, rebuilds the graph,
 * checks it hashes as the server planned, constructs its deployment, serves
 * calls on its socket, and obeys the control channel. It exits when that
 * channel closes, so a killed server leaves no replica behind.
 */
export async function runReplica(spec: ReplicaSpec, links: LinkOptions = {}, hooks: ReplicaHooks = {}): Promise<void> {
  const env = readEnv();
  const who = { app: spec.app, deployment: spec.deployment, replica: spec.replicaId };
  if (env.logging) installReplicaConsole(env.logging, who, (line) => send({ t: "log", line }));
  if (env.tracing) setProcessTracer(new Tracer(env.tracing, who));
  process.on("unhandledRejection", (e) => console.error(`unhandled rejection (replica lives on): ${(e as Error)?.stack ?? e}`));
  // An exception nothing caught ends the replica; the server learns why (status shows it) before it goes.
  process.on("uncaughtException", (e) => {
    console.error(`uncaught exception (replica exits): ${(e as Error)?.stack ?? e}`);
    send({ t: "failed", error: ServeError.fromUser(e, spec.deployment).toJSON() });
    setTimeout(() => process.exit(1), 50);
  });
  process.on("SIGINT", () => {}); // Ctrl-C reaches the whole group; the server decides when replicas stop.
  process.on("SIGTERM", () => (port.sigterm ? port.sigterm() : process.exit(0)));
  installHeapProbe();

  // The server is this process's parent: its pid names the arena, so the sweep after a crash finds it.
  // The arena is freed and unlinked when this process exits, whatever the reason.
  const shm = SharedMemory.open(spec.sharedMemory, process.ppid);
  const invoker = new RemoteInvoker(shm, links);
  let callable: Callable;
  try {
    checkFileUnchanged(spec);
    const graph = await loadGraph(spec.modulePath, spec.exportName);
    if (graph.ir.hash !== spec.hash) {
      throw new ServeError(
        "build",
        `the graph rebuilt in this replica differs from the one the server planned (hash ${graph.ir.hash} ≠ ${spec.hash}); init args must be the same in every process — no random values, clocks or environment-dependent values in bind()`,
        { deployment: spec.deployment },
      );
    }
    setAdmissionLimit(spec.maxOngoingRequests); // before reconfigure() runs in instantiate
    // Colocated deployments this replica calls run in this process; other calls go out.
    const calls = spec.colocated?.length ? new ColocatingInvoker(graph.ir, spec.colocated, invoker) : invoker;
    callable = await instantiate(graph.ir, spec.deployment, calls, spec.userConfig);
  } catch (e) {
    fail(e, spec.deployment);
  }

  // spec.socket is a unix path, or tcp://host:port (port 0: any; the bound address is what peers are told).
  let server!: ReplicaServer;
  let listener: LinkListener;
  /** Its callers' connections, told when it drained (farewell.ts). */
  const farewell = new Farewell((c) => !server.awaitedOn(c));
  try {
    const handlers = {
      open: (c: Connection) => farewell.opened(c),
      message: (m: DataMessage, c: Connection) => server.handle(m, c),
      close: (c: Connection) => {
        farewell.closed(c);
        server.dropConnection(c);
      },
    };
    listener = listenLink(spec.socket, handlers, shm, links);
  } catch (e) {
    fail(e, spec.deployment); // e.g. a TCP address without a cluster token, or a port in use
  }
  server = new ReplicaServer(callable, spec.maxOngoingRequests, { socket: listener.address, fetch: (ref) => invoker.fetchKept(ref) });

  const local = new LocalIngress(server);
  let plane: DataPlane | null = null;
  let warm = false;
  /** The routes that came before warmUp() finished (the controller sends them at start). */
  let coldRoutes: ProxySnapshot | null = null;
  const metrics = () => ({ ...replicaStats.snapshot(server.admitted, invoker.queued()), ...(plane && { http: plane.counts() }) });

  /** The userConfig this replica last applied without error. */
  let applied: unknown = spec.userConfig;
  /** Told to drain: by when it is gone (a second drain, a kill, only brings it forward). */
  const deadline = new Deadline();
  let leaving = false;
  obey = (msg) => void onControl(msg);
  for (const msg of early.splice(0)) obey(msg);
  async function onControl(msg: ControlToReplica): Promise<void> {
    switch (msg.t) {
      case "start":
        return;
      case "routes":
        return invoker.update(msg.table);
      case "proxy-routes":
        if (!spec.listen || !hooks.dataPlane || (!plane && server.draining)) return;
        if (!warm) {
          coldRoutes = msg.snapshot; // the listener opens once warmUp() has run
          return;
        }
        plane ??= hooks.dataPlane({ spec, listen: spec.listen, local, socket: listener.address, shm, links, send });
        return plane.routes(msg.snapshot);
      case "limits":
        server.maxOngoing = msg.maxOngoingRequests;
        setAdmissionLimit(msg.maxOngoingRequests);
        return;
      case "reconfigure": {
        const fn = callable.instance?.reconfigure as ((c: unknown) => unknown) | undefined;
        if (typeof fn !== "function") return send({ t: "done", seq: msg.seq });
        try {
          await server.exclusive(async () => {
            try {
              await fn.call(callable.instance, msg.userConfig);
              applied = msg.userConfig;
            } catch (e) {
              // A reconfigure() that throws half-way leaves half-applied state: the
              // last userConfig that applied goes back before any held call runs.
              if (applied !== undefined) {
                try {
                  await fn.call(callable.instance, applied);
                } catch {
                  // The controller's own rollback follows, and replaces a replica that cannot go back.
                }
              }
              throw e;
            }
          });
          send({ t: "done", seq: msg.seq });
        } catch (e) {
          send({ t: "done", seq: msg.seq, error: ServeError.fromUser(e, spec.deployment).toJSON() });
        }
        return;
      }
      case "health": {
        const fn = callable.instance?.checkHealth;
        try {
          if (typeof fn === "function") await (fn as () => unknown).call(callable.instance);
          send({ t: "done", seq: msg.seq });
        } catch (e) {
          send({ t: "done", seq: msg.seq, error: ServeError.fromUser(e, spec.deployment).toJSON() });
        }
        return;
      }
      case "metrics-now":
        send({ t: "metrics", snapshot: metrics() });
        return send({ t: "done", seq: msg.seq });
      case "close-listener":
        await plane?.stop(msg.timeoutS);
        return send({ t: "done", seq: msg.seq });
      case "drain": {
        deadline.within(msg.timeoutS * 1000);
        if (leaving) return;
        leaving = true;
        // The listener stops taking connections first; what it holds is answered (by siblings once this one drains).
        const closed = plane?.stop(msg.timeoutS);
        await Promise.race([server.drain(msg.timeoutS), deadline.reached]);
        await Promise.race([closed, deadline.reached]);
        send({ t: "metrics", snapshot: metrics() }); // the last counts, or the listener's final second is lost
        send({ t: "drained" });
        invoker.close();
        // Its callers may still have calls on the way: each hears it drained and hangs up; it leaves once all have.
        await farewell.leave(deadline);
        setTimeout(() => process.exit(0), 20);
        return;
      }
    }
  }

  // Before "ready": the server publishes this replica's socket only then, so no call arrives while it warms up.
  await warmUp(callable, spec.deployment).catch((e) => fail(e, spec.deployment));
  warm = true;
  // An ingress replica listens before it says "ready": once its application runs, the main process has stepped aside.
  if (coldRoutes) void onControl({ t: "proxy-routes", snapshot: coldRoutes });
  // Load goes out when it changed: the controller keeps the last figure, and an unchanged one
  // would only wake the main process (twice a second per replica) for nothing.
  let lastLoad = 0;
  setInterval(() => {
    if (server.admitted === lastLoad) return;
    lastLoad = server.admitted;
    send({ t: "load", ongoing: lastLoad, queued: 0 });
  }, LOAD_EVERY_MS).unref();
  observeBatches((n) => replicaStats.batch.observe(n));
  setInterval(() => send({ t: "metrics", snapshot: metrics() }), METRICS_EVERY_MS).unref();
  send({ t: "ready", socket: listener.address });
}
