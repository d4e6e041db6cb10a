/**
 * The data-plane listener an ingress replica runs itself (proxy.location
 * "ingress"): the same createProxy as the main process's, bound to the same
 * port with SO_REUSEPORT, so the kernel spreads connections over every
 * ingress replica and no request passes through the main process. Requests
 * for this replica's own application run in process (LocalIngress); those
 * for another application go to its ingress replicas over their sockets,
 * routed by the controller's snapshots (ProxyRoutes).
 */
import { ServeError } from "../error.ts";
import { ProxyRoutes } from "../cluster/proxy-routes.ts";
import { createProxy } from "../http/proxy.ts";
import { CLOSE_GRACE_MS, closingFetch } from "../http/closing-fetch.ts";
import { RequestMetrics } from "../http/request-metrics.ts";
import type { DataPlane, DataPlaneContext } from "../runtime/replica/main.ts";

/** Starts nothing until the first snapshot: `routes()` opens the listener. */
export function ingressListener(ctx: DataPlaneContext): DataPlane {
  const routes = new ProxyRoutes(ctx.links, ctx.shm, { app: ctx.spec.app, socket: ctx.socket, target: ctx.local });
  const metrics = new RequestMetrics();
  const active = new Set<{ abort(reason: unknown): void }>();
  const proxy = createProxy({ routes: routes.routes, metrics, healthy: () => routes.serving(), active }, ctx.listen.proxy);
  let http: ReturnType<typeof Bun.serve> | null = null;
  let closing = false;
  let stopped: Promise<void> | null = null;
  return {
    routes(snapshot) {
      routes.apply(snapshot);
      if (http || closing) return;
      try {
        http = Bun.serve({
          ...proxy,
          hostname: ctx.listen.host,
          port: ctx.listen.port,
          reusePort: true,
          // While it closes, every answer closes its connection: the client's next request opens one to a listener that stays.
          fetch: closingFetch(proxy.fetch, () => closing),
        });
      } catch (e) {
        // The main process keeps listening; this replica still serves calls on its socket.
        console.error(`cannot listen on the data-plane port ${ctx.listen.host}:${ctx.listen.port}: ${(e as Error).message}`);
        return;
      }
      ctx.send({ t: "listening", open: true });
    },
    stop(timeoutS) {
      closing = true;
      stopped ??= (async () => {
        if (!http) return;
        ctx.send({ t: "listening", open: false });
        await Bun.sleep(Math.min(CLOSE_GRACE_MS, (timeoutS * 1000) / 2));
        const answered = http.stop(false);
        const inTime = await Promise.race([answered.then(() => true), Bun.sleep(timeoutS * 1000).then(() => false)]);
        if (!inTime) {
          // Answered 503 rather than cut off when the process exits.
          const why = new ServeError("unavailable", `this ingress replica is shutting down and the request did not finish within its drain time (${timeoutS} s); retry it`);
          for (const a of active) a.abort(why);
          await Promise.race([answered, Bun.sleep(500)]);
        }
        routes.close();
      })();
      return stopped;
    },
    counts: () => metrics.counts(),
  };
}
