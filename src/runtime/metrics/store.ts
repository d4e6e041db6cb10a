import { addHistogram, BATCH_BUCKETS, emptyHistogram, LATENCY_BUCKETS, type HistogramData } from "./histogram.ts";
import type { MetricsSnapshot } from "./snapshot.ts";
import { addHttpCounts, type HttpCounts } from "./http-counts.ts";
import { family, histogramSamples, labels } from "./text-format.ts";

/** A replica that sent nothing for this long is gone (stopped, dead, replaced): its gauges are no longer shown. */
const STALE_MS = 3500;

/** One replica id's counters: those of earlier processes under that id (restarts), plus the live one's last snapshot. */
interface ReplicaEntry {
  app: string;
  deployment: string;
  replica: string;
  last: MetricsSnapshot;
  at: number;
  /** Counts of earlier processes under this id, so counters never go down across a restart. */
  base: { requests: Record<string, number>; latency: HistogramData; batch: HistogramData; cpuSeconds: number; http: HttpCounts };
}

/** One deployment's totals over all its replicas, past and present (counters), and its gauges now. */
export interface DeploymentTotals {
  app: string;
  deployment: string;
  /** Calls answered, by outcome ("ok", or an error code / HTTP status). */
  requests: Record<string, number>;
  latency: HistogramData;
  ongoing: number;
  queued: number;
  replicas: { replica: string; ongoing: number; rssBytes: number; cpuSeconds: number }[];
}

/** Where else calls queue: the main process's own routers (the proxy's, for each application's ingress). */
export type LocalQueues = () => Iterable<{ app: string; queued: Record<string, number> }>;

/**
 * The main process's view of every replica's counters, fed by the replicas'
 * `{ t: "metrics" }` control messages, read by the admin API's /metrics and
 * its dashboard.
 *
 * @example
 * const store = new MetricsStore();
 * store.ingest("default", "Model", "Model#0", msg.snapshot); // on each { t: "metrics" } message
 * const text = store.render();
 */
export class MetricsStore {
  readonly #entries = new Map<string, ReplicaEntry>();

  constructor(
    readonly localQueues: LocalQueues = () => [],
    readonly now: () => number = Date.now,
  ) {}

  /** Takes one replica's snapshot. A new pid under a known id is a restart: the old process's counts are kept. */
  ingest(app: string, deployment: string, replica: string, snapshot: MetricsSnapshot): void {
    const key = JSON.stringify([app, deployment, replica]);
    const e = this.#entries.get(key);
    if (!e) {
      const base = { requests: {}, latency: emptyHistogram(LATENCY_BUCKETS), batch: emptyHistogram(BATCH_BUCKETS), cpuSeconds: 0, http: {} };
      this.#entries.set(key, { app, deployment, replica, last: snapshot, at: this.now(), base });
      return;
    }
    if (e.last.pid !== snapshot.pid) {
      for (const [k, n] of Object.entries(e.last.requests)) e.base.requests[k] = (e.base.requests[k] ?? 0) + n;
      addHistogram(e.base.latency, e.last.latency);
      addHistogram(e.base.batch, e.last.batch);
      e.base.cpuSeconds += e.last.cpuSeconds;
      if (e.last.http) addHttpCounts(e.base.http, e.last.http);
    }
    e.last = snapshot;
    e.at = this.now();
  }

  /** The HTTP requests ingress replicas' listeners answered, one entry per replica id (its restarts included). */
  httpCounts(): HttpCounts[] {
    return [...this.#entries.values()].flatMap((e) => [e.base.http, ...(e.last.http ? [e.last.http] : [])]);
  }

  /** Drops everything known of an application (it was deleted). */
  forgetApp(app: string): void {
    for (const [k, e] of this.#entries) if (e.app === app) this.#entries.delete(k);
  }

  #live(e: ReplicaEntry): boolean {
    return this.now() - e.at < STALE_MS;
  }

  /** Per deployment: counters over every replica it ever had, gauges over the live ones. */
  totals(): DeploymentTotals[] {
    const out = new Map<string, DeploymentTotals>();
    const get = (app: string, deployment: string) => {
      const key = JSON.stringify([app, deployment]);
      let t = out.get(key);
      if (!t) out.set(key, (t = { app, deployment, requests: {}, latency: emptyHistogram(LATENCY_BUCKETS), ongoing: 0, queued: 0, replicas: [] }));
      return t;
    };
    for (const e of this.#entries.values()) {
      const t = get(e.app, e.deployment);
      for (const r of [e.base.requests, e.last.requests]) for (const [k, n] of Object.entries(r)) t.requests[k] = (t.requests[k] ?? 0) + n;
      addHistogram(t.latency, e.base.latency);
      addHistogram(t.latency, e.last.latency);
      if (!this.#live(e)) continue;
      t.ongoing += e.last.ongoing;
      t.replicas.push({ replica: e.replica, ongoing: e.last.ongoing, rssBytes: e.last.rssBytes, cpuSeconds: e.base.cpuSeconds + e.last.cpuSeconds });
      for (const [d, n] of Object.entries(e.last.queued)) get(e.app, d).queued += n;
    }
    for (const { app, queued } of this.localQueues()) for (const [d, n] of Object.entries(queued)) get(app, d).queued += n;
    return [...out.values()];
  }

  /** The deployment and replica families in Prometheus text format (0.0.4). */
  render(): string {
    const s = { requests: [] as string[], duration: [] as string[], ongoing: [] as string[], queued: [] as string[], batch: [] as string[], rss: [] as string[], cpu: [] as string[] };
    for (const t of this.totals()) s.queued.push(`serve_bin_deployment_queued_requests${labels({ app: t.app, deployment: t.deployment })} ${t.queued}`);
    for (const e of this.#entries.values()) {
      const who = { app: e.app, deployment: e.deployment, replica: e.replica };
      const requests = { ...e.base.requests };
      for (const [k, n] of Object.entries(e.last.requests)) requests[k] = (requests[k] ?? 0) + n;
      for (const [status, n] of Object.entries(requests)) s.requests.push(`serve_bin_deployment_requests_total${labels({ ...who, status })} ${n}`);
      s.cpu.push(`serve_bin_replica_cpu_seconds_total${labels(who)} ${e.base.cpuSeconds + e.last.cpuSeconds}`);
      if (!this.#live(e)) continue;
      s.ongoing.push(`serve_bin_deployment_ongoing_requests${labels(who)} ${e.last.ongoing}`);
      s.rss.push(`serve_bin_replica_resident_memory_bytes${labels(who)} ${e.last.rssBytes}`);
    }
    for (const [d, h] of this.#byDeployment("latency")) s.duration.push(...histogramSamples("serve_bin_deployment_request_duration_seconds", d, h.counts, h.sum, h.count, LATENCY_BUCKETS));
    for (const [d, h] of this.#byDeployment("batch")) if (h.count > 0) s.batch.push(...histogramSamples("serve_bin_batch_size", d, h.counts, h.sum, h.count, BATCH_BUCKETS));
    return [
      ...family("serve_bin_deployment_requests_total", "counter", "Calls a replica answered, by outcome: ok, an error code (user, timeout, cancelled, unavailable…), or an ingress's HTTP status when 4xx/5xx.", s.requests),
      ...family("serve_bin_deployment_request_duration_seconds", "histogram", "Seconds from a call's admission by a replica to its answer, per deployment.", s.duration),
      ...family("serve_bin_deployment_ongoing_requests", "gauge", "Calls admitted by a replica and not yet answered.", s.ongoing),
      ...family("serve_bin_deployment_queued_requests", "gauge", "Calls waiting in callers' queues for a replica of the deployment (all callers summed).", s.queued),
      ...family("serve_bin_batch_size", "histogram", "Items per batch run by a deployment's batched methods.", s.batch),
      ...family("serve_bin_replica_resident_memory_bytes", "gauge", "Resident set size of a replica process.", s.rss),
      ...family("serve_bin_replica_cpu_seconds_total", "counter", "User and system CPU seconds used by a replica process (its earlier processes under the same id included).", s.cpu),
    ].join("\n") + "\n";
  }

  #byDeployment(which: "latency" | "batch"): Map<Record<string, string>, HistogramData> {
    const byKey = new Map<string, [Record<string, string>, HistogramData]>();
    for (const e of this.#entries.values()) {
      const key = JSON.stringify([e.app, e.deployment]);
      let v = byKey.get(key);
      if (!v) byKey.set(key, (v = [{ app: e.app, deployment: e.deployment }, emptyHistogram(which === "latency" ? LATENCY_BUCKETS : BATCH_BUCKETS)]));
      addHistogram(v[1], e.base[which]);
      addHistogram(v[1], e.last[which]);
    }
    return new Map(byKey.values());
  }
}
