import { ServeError } from "../../error.ts";
import { instantiate, type Callable } from "../../graph/instantiate.ts";
import { listenLink, type LinkListener, type LinkOptions } from "../channel/transport.ts";
import type { ControlFromReplica, ControlToReplica, ReplicaSpec } from "../channel/messages.ts";
import { SharedMemory } from "../channel/shm-channel.ts";
import { loadGraph } from "../load-graph.ts";
import { RemoteInvoker } from "../remote-invoker.ts";
import { ReplicaServer } from "./server.ts";

function send(msg: ControlFromReplica): void {
  process.send?.(msg);
}

function fail(e: unknown, deployment: string): never {
  const err = ServeError.fromUser(e, deployment);
  send({ t: "failed", error: err.toJSON() });
  // Give the IPC message time to leave before exiting.
  setTimeout(() => process.exit(1), 50);
  throw err;
}

/**
 * A replica process: imports the graph module itself, rebuilds the graph,
 * checks it hashes as the server planned, constructs its deployment, serves
 * calls on its socket, and obeys the control channel. It exits when that
 * channel closes, so a killed server leaves no replica behind.
 */
export async function runReplica(spec: ReplicaSpec, links: LinkOptions = {}): Promise<void> {
  process.on("disconnect", () => process.exit(0));
  process.on("unhandledRejection", (e) => console.error(`unhandled rejection (replica lives on): ${(e as Error)?.stack ?? e}`));
  process.on("SIGINT", () => {}); // Ctrl-C reaches the whole group; the server decides when replicas stop.
  process.on("SIGTERM", () => process.exit(0));

  // The server is this process's parent: its pid names the arena, so the sweep after a crash finds it.
  // The arena is freed and unlinked when this process exits, whatever the reason.
  const shm = SharedMemory.open(spec.sharedMemory, process.ppid);
  const invoker = new RemoteInvoker(shm, links);
  let callable: Callable;
  try {
    const graph = await loadGraph(spec.modulePath, spec.exportName);
    if (graph.ir.hash !== spec.hash) {
      throw new ServeError(
        "build",
        `the graph rebuilt in this replica differs from the one the server planned (hash ${graph.ir.hash} ≠ ${spec.hash}); init args must be the same in every process — no random values, clocks or environment-dependent values in bind()`,
        { deployment: spec.deployment },
      );
    }
    callable = await instantiate(graph.ir, spec.deployment, invoker, spec.userConfig);
  } catch (e) {
    fail(e, spec.deployment);
  }

  // spec.socket is a unix path, or tcp://host:port (port 0: any; the bound address is what peers are told).
  let server!: ReplicaServer;
  let listener: LinkListener;
  try {
    listener = listenLink(spec.socket, { message: (m, c) => server.handle(m, c), close: (c) => server.dropConnection(c) }, shm, links);
  } catch (e) {
    fail(e, spec.deployment); // e.g. a TCP address without a cluster token, or a port in use
  }
  server = new ReplicaServer(callable, spec.maxOngoingRequests, { socket: listener.address, fetch: (ref) => invoker.fetchKept(ref) });

  /** The userConfig this replica last applied without error. */
  let applied: unknown = spec.userConfig;
  process.on("message", (raw) => void onControl(raw as ControlToReplica));
  async function onControl(msg: ControlToReplica): Promise<void> {
    switch (msg.t) {
      case "routes":
        return invoker.update(msg.table);
      case "limits":
        server.maxOngoing = msg.maxOngoingRequests;
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
      case "drain":
        await server.drain(msg.timeoutS);
        send({ t: "drained" });
        invoker.close();
        setTimeout(() => process.exit(0), 20);
        return;
    }
  }

  setInterval(() => send({ t: "load", ongoing: server.admitted, queued: 0 }), 500).unref();
  send({ t: "ready", socket: listener.address });
}
