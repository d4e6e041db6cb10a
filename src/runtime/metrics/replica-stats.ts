import { BATCH_BUCKETS, Histogram, LATENCY_BUCKETS } from "./histogram.ts";
import type { MetricsSnapshot } from "./snapshot.ts";

/**
 * A replica's own counters. The request path only increments: a call costs
 * one clock read at admission and one at the answer, a histogram bucket and
 * a counter. The snapshot is built when it is sent, about once a second.
 */
export class ReplicaStats {
  readonly latency = new Histogram(LATENCY_BUCKETS);
  readonly batch = new Histogram(BATCH_BUCKETS);
  #ok = 0;
  /** Failed calls by error code; a handful of keys at most. */
  readonly #errors = new Map<string, number>();

  /** One call answered; `startMs` is its performance.now() at admission, `error` its ServeError code if it failed. */
  done(startMs: number, error?: string): void {
    this.latency.observe((performance.now() - startMs) / 1000);
    if (error === undefined) this.#ok++;
    else this.#errors.set(error, (this.#errors.get(error) ?? 0) + 1);
  }

  snapshot(ongoing: number, queued: Record<string, number>): MetricsSnapshot {
    const cpu = process.cpuUsage();
    const requests: Record<string, number> = { ok: this.#ok };
    for (const [code, n] of this.#errors) requests[code] = n;
    return {
      pid: process.pid,
      ongoing,
      requests,
      latency: this.latency.data(),
      batch: this.batch.data(),
      queued,
      rssBytes: process.memoryUsage.rss(),
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
    };
  }
}

/** This process's counters: one replica per process, so one instance. */
export const replicaStats = new ReplicaStats();

/** An ingress's HTTP answer of 4xx/5xx counts as failed, labelled with its status code ("404", "500"). */
export function httpFailure(out: unknown): string | undefined {
  const status = (out as { status?: unknown } | null)?.status;
  return typeof status === "number" && status >= 400 ? String(status) : undefined;
}
