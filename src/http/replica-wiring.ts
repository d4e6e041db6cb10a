import { MetricsStore } from "../runtime/metrics/store.ts";
import { tapReplicas } from "../runtime/replica-tap.ts";
import type { Server } from "./server.ts";

/**
 * Connects a server's replicas to a new MetricsStore and their JSON log
 * lines to `log`: those messages are taken off the supervisor's message
 * stream before the controller sees them, and the proxy's own queues (calls
 * waiting for an ingress) are added when the store is read. Call it before
 * the first application starts.
 */
export function attachReplicaTap(server: Server, log: (line: string) => void): MetricsStore {
  const store = new MetricsStore(function* () {
    for (const [app, a] of server.controller.apps) yield { app, queued: a.invoker.queued() };
  });
  // Stopgap until the controller handles these messages itself (its message switch calls
  // store.ingest and writes log lines): the supervisor is swapped for a tapped one.
  server.controller.opts.supervisor = tapReplicas(server.controller.opts.supervisor, { metrics: store, log });
  return store;
}
