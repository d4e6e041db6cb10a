/**
 * One hop of a chain built from the runtime's own parts, outside a replica
 * process: a ReplicaServer on a unix socket (Connection + wire codec) whose
 * `__call__` calls the next peer through a handle (createHandle →
 * RemoteInvoker → Router → ReplicaClient), as a chain10 Link does; the last
 * peer answers itself. Beside relay-peer.ts (the same messages, no runtime),
 * it tells how much of a hop's CPU is the runtime's code.
 *   bun bench/lib/runtime-peer.ts /path/to.sock [/path/of/next.sock]
 */
import { rmSync } from "node:fs";
import { createHandle } from "../../src/api/handle.ts";
import type { Callable } from "../../src/graph/instantiate.ts";
import { Connection, socketHandlers } from "../../src/runtime/channel/connection.ts";
import { RemoteInvoker } from "../../src/runtime/remote-invoker.ts";
import { ReplicaServer } from "../../src/runtime/replica/server.ts";

const [at, nextPath] = process.argv.slice(2) as [string, string | undefined];
const invoker = new RemoteInvoker();
if (nextPath) invoker.update({ version: 1, deployments: { Next: { replicas: [{ id: "next", socket: nextPath }], maxOngoingRequests: 100, maxQueuedRequests: -1 } } });
const next = createHandle<(x: number) => number>({ name: "Next", kind: "function", methods: [] }, invoker);
const instance = {
  async __call__(x: number): Promise<number> {
    return nextPath ? await next.remote(x) : x;
  },
};
const callable = { deployment: { name: "Peer", methods: ["__call__"] }, instance, resolve: () => instance.__call__.bind(instance) } as unknown as Callable;
const server = new ReplicaServer(callable, 100);
rmSync(at, { force: true });
Bun.listen<Connection>({
  unix: at,
  socket: { open: (s) => void (s.data = new Connection(s, { message: (m, c) => server.handle(m, c), close: (c) => server.dropConnection(c) })), ...socketHandlers },
});
process.on("SIGTERM", () => {
  rmSync(at, { force: true });
  process.exit(0);
});
process.stdout.write("relay peer ready\n");
