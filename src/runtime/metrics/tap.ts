import type { Supervisor } from "../supervisor.ts";
import type { MetricsStore } from "./store.ts";

/**
 * A Supervisor that hands each replica's `{ t: "metrics" }` messages to the
 * store and passes every other message on, so the controller never sees them.
 *
 * @example
 * const supervisor = tapMetrics(new ProcessSupervisor(), store);
 */
export function tapMetrics(inner: Supervisor, store: MetricsStore): Supervisor {
  return {
    spawn(spec, env, handlers) {
      return inner.spawn(spec, env, {
        ...handlers,
        message(msg) {
          if (msg.t === "metrics") store.ingest(spec.app, spec.deployment, spec.replicaId, msg.snapshot);
          else handlers.message(msg);
        },
      });
    },
  };
}
