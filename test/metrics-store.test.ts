/** The main process's MetricsStore: counters survive replica restarts, gauges of gone replicas disappear. */
import { describe, expect, it } from "vitest";
import { BATCH_BUCKETS, emptyHistogram, Histogram, LATENCY_BUCKETS, quantile } from "../src/runtime/metrics/histogram.ts";
import type { MetricsSnapshot } from "../src/runtime/metrics/snapshot.ts";
import { MetricsStore } from "../src/runtime/metrics/store.ts";
import { parseProm, select, total } from "./prom-text.ts";

function snap(pid: number, ok: number, latencies: number[], extra: Partial<MetricsSnapshot> = {}): MetricsSnapshot {
  const h = new Histogram(LATENCY_BUCKETS);
  for (const l of latencies) h.observe(l);
  return { pid, ongoing: 0, requests: { ok }, latency: h.data(), batch: emptyHistogram(BATCH_BUCKETS), queued: {}, rssBytes: 5e7, cpuSeconds: 1, ...extra };
}

describe("MetricsStore", () => {
  it("keeps a replica's counters growing across a restart under the same id", () => {
    const store = new MetricsStore();
    store.ingest("a", "M", "M#0", snap(100, 4, [0.01, 0.01, 0.01, 0.01]));
    store.ingest("a", "M", "M#0", snap(200, 1, [0.2])); // the replacement process starts from 0
    const s = parseProm(store.render());
    expect(select(s, "serve_bin_deployment_requests_total").map((x) => [x.labels, x.value])).toEqual([[{ app: "a", deployment: "M", replica: "M#0", status: "ok" }, 5]]);
    expect(total(s, "serve_bin_deployment_request_duration_seconds_count", { deployment: "M" })).toBe(5);
    expect(total(s, "serve_bin_replica_cpu_seconds_total", { replica: "M#0" })).toBe(2);
  });

  it("stops showing the gauges of a replica that sent nothing for a few seconds, and keeps its counters", () => {
    let now = 0;
    const store = new MetricsStore(() => [{ app: "a", queued: { M: 2 } }], () => now);
    store.ingest("a", "M", "M#0", snap(1, 3, [], { ongoing: 2, queued: { N: 4 } }));
    let s = parseProm(store.render());
    expect(total(s, "serve_bin_deployment_ongoing_requests", { replica: "M#0" })).toBe(2);
    expect(select(s, "serve_bin_deployment_queued_requests").map((x) => [x.labels.deployment, x.value]).sort()).toEqual([["M", 2], ["N", 4]]);
    now = 10_000;
    s = parseProm(store.render());
    expect(select(s, "serve_bin_deployment_ongoing_requests")).toEqual([]);
    expect(select(s, "serve_bin_replica_resident_memory_bytes")).toEqual([]);
    expect(total(s, "serve_bin_deployment_requests_total", { replica: "M#0" })).toBe(3);
  });

  it("estimates quantiles inside the bucket that holds them", () => {
    const h = new Histogram(LATENCY_BUCKETS);
    for (let i = 0; i < 100; i++) h.observe(i < 90 ? 0.003 : 0.2);
    expect(quantile(h.data(), LATENCY_BUCKETS, 0.5)).toBeGreaterThan(0.0025);
    expect(quantile(h.data(), LATENCY_BUCKETS, 0.5)).toBeLessThanOrEqual(0.005);
    expect(quantile(h.data(), LATENCY_BUCKETS, 0.99)).toBeGreaterThan(0.1);
    expect(quantile(h.data(), LATENCY_BUCKETS, 0.99)).toBeLessThanOrEqual(0.25);
    expect(quantile(emptyHistogram(LATENCY_BUCKETS), LATENCY_BUCKETS, 0.5)).toBeNull();
  });
});
