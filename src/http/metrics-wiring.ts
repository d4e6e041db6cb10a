import { MetricsStore } from "../runtime/metrics/store.ts";
import { tapMetrics } from "../runtime/metrics/tap.ts";
import type { Server } from "./server.ts";

/**
 * Connects a server's replicas to a new MetricsStore: their metrics messages
 * are taken off the supervisor's message stream before the controller sees
 * them, and the proxy's own queues (calls waiting for an ingress) are added
 * when the store is read. Call it before the first application starts.
 */
export function attachMetrics(server: Server): MetricsStore {
  const store = new MetricsStore(function* () {
    for (const [app, a] of server.controller.apps) yield { app, queued: a.invoker.queued() };
  });
  // Stopgap until the controller takes a MetricsStore itself (its message switch calls store.ingest):
  // the supervisor is swapped for a tapped one, which changes nothing else.
  server.controller.opts.supervisor = tapMetrics(server.controller.opts.supervisor, store);
  return store;
}
