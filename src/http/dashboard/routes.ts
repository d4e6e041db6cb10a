import type { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import type { GraphView } from "../../graph/describe.ts";
import type { MetricsStore } from "../../runtime/metrics/store.ts";
import type { StatusJSON } from "../../runtime/control/status.ts";
import type { AppliedConfig } from "../server.ts";
import { DashboardFeed, type DashboardSource } from "./feed.ts";
import { DASHBOARD_HTML } from "./page.ts";

/** How often the page gets a new snapshot. */
const EVERY_MS = 1000;

/**
 * The page itself: static, with no data in it, so it is served without the
 * token (a browser cannot send a header when it navigates); everything it
 * shows comes from the API below, which needs the token like the rest.
 */
export function mountDashboardPage(app: Hono): void {
  app.get("/", (c) => c.html(DASHBOARD_HTML, 200, { "cache-control": "no-store", "content-security-policy": "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:" }));
}

/**
 * `GET /api/dashboard` (one snapshot) and `GET /api/dashboard/events`
 * (server-sent events, one snapshot a second). Mount after the token check.
 */
export function mountDashboardApi(app: Hono, source: DashboardSource): void {
  const feed = new DashboardFeed(source);
  app.get("/api/dashboard", (c) => c.json(feed.snapshot()));
  app.get("/api/dashboard/events", (c) =>
    streamSSE(c, async (stream) => {
      let open = true;
      stream.onAbort(() => {
        open = false;
      });
      while (open) {
        await stream.writeSSE({ event: "snapshot", data: JSON.stringify(feed.snapshot()) });
        await stream.sleep(EVERY_MS);
      }
    }),
  );
}

/** The dashboard's view of the admin API's target: status, applied config, graphs and counters. */
export function dashboardSource(
  server: { status(): StatusJSON; appliedConfig(): AppliedConfig },
  opts: { metrics?: MetricsStore; graph?: (app: string) => GraphView | undefined },
): DashboardSource {
  return {
    status: () => server.status(),
    deploymentConfig: (app, name) => server.appliedConfig().applications.find((a) => a.name === app)?.deployments.find((d) => d.name === name),
    graph: (app) => opts.graph?.(app),
    metrics: opts.metrics,
  };
}
