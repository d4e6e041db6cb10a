import type { GraphView } from "../../graph/describe.ts";
import { LATENCY_BUCKETS, quantile, subtractHistogram, type HistogramData } from "../../runtime/metrics/histogram.ts";
import type { DeploymentTotals, MetricsStore } from "../../runtime/metrics/store.ts";
import type { StatusJSON } from "../../runtime/control/status.ts";

/** How far back rates and latency quantiles look. */
const WINDOW_MS = 5000;

/** What the dashboard reads: the server's status and config, each application's graph, the replicas' counters. */
export interface DashboardSource {
  status(): StatusJSON;
  /** Each deployment's numReplicas and userConfig as applied, by application. */
  deploymentConfig(app: string, deployment: string): { numReplicas?: number | "auto"; userConfig?: unknown } | undefined;
  /** The graph as planned (drawn once, where its module was imported). */
  graph(app: string): GraphView | undefined;
  metrics?: MetricsStore;
}

/** One deployment on the dashboard: its status and replicas, and its traffic over the last few seconds. */
export interface DeploymentPanel {
  status: string;
  message: string;
  targetReplicas: number;
  numReplicas: number | "auto" | null;
  userConfig: unknown;
  replicas: { id: string; pid: number; state: string; restarts: number; ongoing: number | null; rssBytes: number | null }[];
  /** Calls answered since the server started, and of those not ok. */
  requests: number;
  errors: number;
  requestsPerS: number;
  errorRate: number | null;
  p50S: number | null;
  p99S: number | null;
  ongoing: number;
  queued: number;
}

/** Everything the page draws, sent as one server-sent event per second. */
export interface DashboardSnapshot {
  at: number;
  apps: { name: string; status: string; message: string; routePrefix: string; graph: GraphView | null; deployments: Record<string, DeploymentPanel> }[];
}

interface Reading {
  at: number;
  /** By JSON [app, deployment]: cumulative requests, errors and latency. */
  totals: Map<string, { requests: number; errors: number; latency: HistogramData }>;
}

/**
 * Builds the dashboard's snapshots. Rates come from the difference between
 * this reading of the cumulative counters and one about WINDOW_MS older, so
 * every viewer sees the same figures however often they ask.
 */
export class DashboardFeed {
  #readings: Reading[] = [];

  constructor(readonly source: DashboardSource) {}

  snapshot(now = Date.now()): DashboardSnapshot {
    const totals = this.source.metrics?.totals() ?? [];
    const reading = this.#read(totals, now);
    const old = this.#readings.find((r) => now - r.at <= WINDOW_MS) ?? reading;
    const byKey = new Map(totals.map((t) => [JSON.stringify([t.app, t.deployment]), t]));
    const status = this.source.status();
    const apps = Object.entries(status.applications).map(([name, a]) => {
      const deployments: Record<string, DeploymentPanel> = {};
      for (const [d, ds] of Object.entries(a.deployments)) {
        const key = JSON.stringify([name, d]);
        const t = byKey.get(key);
        const cur = reading.totals.get(key);
        const prev = old.totals.get(key);
        const dt = (now - old.at) / 1000;
        const win = cur && prev ? subtractHistogram(cur.latency, prev.latency) : null;
        const dReq = cur && prev ? cur.requests - prev.requests : 0;
        const dErr = cur && prev ? cur.errors - prev.errors : 0;
        const live = new Map(t?.replicas.map((r) => [r.replica, r]));
        const cfg = this.source.deploymentConfig(name, d);
        deployments[d] = {
          status: ds.status,
          message: ds.message,
          targetReplicas: ds.targetReplicas,
          numReplicas: cfg?.numReplicas ?? null,
          userConfig: cfg?.userConfig ?? null,
          replicas: ds.replicas.map((r) => ({ ...r, ongoing: live.get(r.id)?.ongoing ?? null, rssBytes: live.get(r.id)?.rssBytes ?? null })),
          requests: cur?.requests ?? 0,
          errors: cur?.errors ?? 0,
          requestsPerS: dt > 0 ? dReq / dt : 0,
          errorRate: dReq > 0 ? dErr / dReq : null,
          p50S: win ? quantile(win, LATENCY_BUCKETS, 0.5) : null,
          p99S: win ? quantile(win, LATENCY_BUCKETS, 0.99) : null,
          ongoing: t?.ongoing ?? 0,
          queued: t?.queued ?? 0,
        };
      }
      return { name, status: a.status, message: a.message, routePrefix: a.routePrefix, graph: this.source.graph(name) ?? null, deployments };
    });
    return { at: now, apps };
  }

  /** Keeps one reading per second for twice the window: enough to difference against, bounded in size. */
  #read(totals: DeploymentTotals[], now: number): Reading {
    const reading: Reading = { at: now, totals: new Map() };
    for (const t of totals) {
      let requests = 0;
      for (const n of Object.values(t.requests)) requests += n;
      reading.totals.set(JSON.stringify([t.app, t.deployment]), { requests, errors: requests - (t.requests.ok ?? 0), latency: t.latency });
    }
    const last = this.#readings.at(-1);
    if (!last || now - last.at >= 900) this.#readings.push(reading);
    this.#readings = this.#readings.filter((r) => now - r.at <= WINDOW_MS * 2);
    return reading;
  }
}
