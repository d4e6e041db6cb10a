import type { Supervisor } from "./supervisor.ts";
import type { MetricsStore } from "./metrics/store.ts";

/** Where the observability messages of replicas go. */
export interface ReplicaTapSinks {
  metrics: MetricsStore;
  /** A whole JSON log line from a replica (logging.format json). */
  log(line: string): void;
}

/**
 * A Supervisor that takes each replica's observability messages — `metrics`
 * to the store, `log` lines to the server's output — and passes every other
 * message on, so the controller never sees them.
 *
 * @example
 * const supervisor = tapReplicas(new ProcessSupervisor(), { metrics: store, log: (l) => process.stdout.write(l + "\n") });
 */
export function tapReplicas(inner: Supervisor, sinks: ReplicaTapSinks): Supervisor {
  return {
    spawn(spec, env, handlers) {
      return inner.spawn(spec, env, {
        ...handlers,
        message(msg) {
          if (msg.t === "metrics") sinks.metrics.ingest(spec.app, spec.deployment, spec.replicaId, msg.snapshot);
          else if (msg.t === "log") sinks.log(msg.line);
          else handlers.message(msg);
        },
      });
    },
  };
}
