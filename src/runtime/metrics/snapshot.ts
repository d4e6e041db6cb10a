import type { HistogramData } from "./histogram.ts";
import type { HttpCounts } from "./http-counts.ts";

/**
 * What a replica reports about itself, cumulative since it started (so a
 * lost or late snapshot loses nothing): sent to the main process over the
 * control channel as `{ t: "metrics", snapshot }`.
 */
export interface MetricsSnapshot {
  /** The process that counted: a new pid under the same replica id is a restart, whose counts start again at 0. */
  pid: number;
  /** Calls admitted and not yet answered. */
  ongoing: number;
  /** Calls answered, by outcome: "ok" or the ServeError code ("user", "timeout", "cancelled", …). */
  requests: Record<string, number>;
  /** Seconds from admission to answer, per call (LATENCY_BUCKETS). */
  latency: HistogramData;
  /** Items per batch run by this replica's batched methods (BATCH_BUCKETS). */
  batch: HistogramData;
  /** Calls this process's routers hold in their queues, by the deployment they wait for. */
  queued: Record<string, number>;
  rssBytes: number;
  cpuSeconds: number;
  /** An ingress replica that listens on the data-plane port: the HTTP requests its listener answered. */
  http?: HttpCounts;
}
