/**
 * The two endpoints every cluster role answers on its HTTP port (SPEC §9):
 * `/-/healthz` — the process is alive (the engine restarts it otherwise) —
 * and `/-/ready` — it can do its job now: constructed, configured, holding a
 * routing snapshot, not draining. A role that is not ready says why.
 */
import type { ProxyListener } from "../../http/proxy.ts";

/** Why the role is not ready, or null when it is. */
export type Readiness = () => string | null;

function answer(path: string, notReady: Readiness): Response | null {
  if (path === "/-/healthz") return new Response("ok");
  if (path !== "/-/ready") return null;
  const why = notReady();
  return why === null ? new Response("ready") : Response.json({ error: "unavailable", message: `not ready: ${why}` }, { status: 503 });
}

/** The path of a request URL without building a URL object (the data path stays cheap). */
function pathOf(url: string): string {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  const q = url.indexOf("?", start);
  return start < 0 ? "/" : url.slice(start, q < 0 ? undefined : q);
}

/** Puts the role's `/-/healthz` and `/-/ready` in front of a data-plane listener. */
export function withReadiness(inner: ProxyListener, notReady: Readiness): ProxyListener {
  return {
    ...inner,
    fetch(req) {
      // Only serve-bin's own paths start with "/-/"; everything else goes straight through.
      if (req.url.includes("/-/")) {
        const own = answer(pathOf(req.url), notReady);
        if (own) return own;
      }
      return inner.fetch(req);
    },
  };
}

/** A role without a data plane of its own (a replica): just the two endpoints. */
export function serveHealth(hostname: string, port: number, notReady: Readiness): ReturnType<typeof Bun.serve> {
  return Bun.serve({
    hostname,
    port,
    fetch: (req) => answer(pathOf(req.url), notReady) ?? Response.json({ error: "not_found", message: "this replica answers /-/healthz and /-/ready here; requests go to the proxy" }, { status: 404 }),
  });
}
