import { createHash, timingSafeEqual } from "node:crypto";
import { Hono, type Context } from "hono";
import { parse as parseYAMLText } from "yaml";
import { ServeError, type Issue } from "../error.ts";
import { deploymentPatchSchema, proxyConfigSchema, formatIssues, parseConfig, routePatchSchema, validate, type ConfigResult, type ServeConfig } from "../config/schema.ts";
import { parseYAML, toYAML } from "../config/yaml.ts";
import { APP_STATES, REPLICA_STATES, type StatusJSON } from "../runtime/control/status.ts";
import { isLoopback, refuseContentType, refuseOrigin } from "./admin-guard.ts";
import { closing, readBody } from "./body-reader.ts";
import { capRequests } from "./connection-cap.ts";
import { errorResponse, type ErrorDetail } from "./error-response.ts";
import type { Server } from "./server.ts";
import { shmStats } from "../runtime/channel/shm-channel.ts";
import { family, labels } from "./prometheus.ts";
import type { MetricsStore } from "../runtime/metrics/store.ts";
import type { GraphView } from "../graph/describe.ts";
import { dashboardSource, mountDashboardApi, mountDashboardPage } from "./dashboard/routes.ts";

export interface AdminOptions {
  host: string;
  port: number;
  /** When set, every request needs `Authorization: Bearer <token>`. */
  token?: string;
  /** Called just after `POST /api/shutdown` has been answered. */
  onShutdown: () => void;
  errorDetail: ErrorDetail;
  /** Seconds a request body may take to arrive (proxy.bodyTimeoutS); slower: 408. */
  bodyTimeoutS?: number;
  /** Requests held at once (proxy.maxConnections); past it: 503. */
  maxConnections?: number;
  /** The replicas' counters (per deployment and replica) for /metrics and the dashboard. */
  metrics?: MetricsStore;
  /** Each application's graph as bound, for the dashboard to draw. */
  graph?: (app: string) => GraphView | undefined;
}

/** The largest admin request body: a config file, never a payload. */
export const ADMIN_MAX_BODY_BYTES = 16 << 20;
const adminDefaults = proxyConfigSchema().parse({});

/** What the admin API drives: the server's public methods, nothing else. */
export type AdminTarget = Pick<Server, "status" | "appliedConfig" | "apply" | "patchDeployment" | "patchRoute" | "deleteApp" | "requests" | "freshListenerCounts" | "rollback">;

const ENDPOINTS = [
  "GET /api/applications",
  "PUT /api/applications",
  "PATCH /api/applications/:app/deployments/:name",
  "DELETE /api/applications/:app",
  "PATCH /api/routes",
  "POST /api/applications/:app/rollback",
  "GET /api/config",
  "POST /api/shutdown",
  "GET /metrics",
  "GET / (dashboard)",
  "GET /api/dashboard",
  "GET /api/dashboard/events",
];


/**
 * The admin API of SPEC section 4 as a Hono app. PUT and PATCH answer once the
 * change serves, or 202 at once with `?wait=false`; invalid bodies get 422 with
 * zod's issues and change nothing.
 *
 * @example
 * const app = createAdmin(server, { token: "s3cret", onShutdown: () => server.stop(), errorDetail: "full" });
 * Bun.serve({ port: 8265, fetch: app.fetch, idleTimeout: 0 });
 */
export function createAdmin(server: AdminTarget, opts: Omit<AdminOptions, "host" | "port">): Hono {
  const app = new Hono();
  const fail = (e: unknown) => errorResponse(e, opts.errorDetail);

  // A body refused before it was read whole: close the connection rather than read the rest.
  app.onError((e) => (e instanceof ServeError && (e.code === "request_timeout" || e.code === "payload_too_large") ? closing(fail(e)) : fail(e)));
  app.notFound((c) =>
    fail(new ServeError("not_found", `the admin API has no ${c.req.method} ${new URL(c.req.url).pathname}; it answers: ${ENDPOINTS.join(", ")}`)),
  );

  mountDashboardPage(app); // before the token check: the page holds no data, its API calls carry the token
  if (opts.token !== undefined) {
    const expected = digest(opts.token);
    app.use("*", async (c, next) => {
      const header = c.req.header("authorization") ?? "";
      const m = /^Bearer\s+(.+)$/i.exec(header);
      if (m && timingSafeEqual(digest(m[1]!.trim()), expected)) return next();
      const why = m ? "the admin token is wrong" : "the admin API needs a token";
      const res = fail(new ServeError("unauthorized", `${why}: send Authorization: Bearer <token> (the server's --admin-token-file / SERVE_BIN_ADMIN_TOKEN)`));
      res.headers.set("www-authenticate", 'Bearer realm="serve-bin"');
      return res;
    });
  }

  // After the token: a caller without one learns that first.
  app.use("*", async (c, next) => {
    const refused = refuseContentType(c.req.raw, c.req.method === "PUT");
    if (refused) throw refused;
    await next();
  });

  const limits = {
    maxBytes: ADMIN_MAX_BODY_BYTES,
    timeoutS: opts.bodyTimeoutS ?? adminDefaults.bodyTimeoutS,
    maxSetting: `the admin API's limit`,
    timeoutSetting: "proxy.bodyTimeoutS",
  };
  const readText = async (req: Request) => new TextDecoder().decode(await readBody(req, limits));

  app.get("/api/applications", (c) => c.json(server.status()));

  app.get("/api/config", (c) => {
    const config = server.appliedConfig();
    if (wantsYAML(c.req.header("accept"))) return c.body(toYAML(config as ServeConfig), 200, { "content-type": "application/yaml; charset=utf-8" });
    return c.json(config);
  });

  app.put("/api/applications", async (c) => {
    const { parsed, raw } = await readConfig(c.req.raw, await readText(c.req.raw));
    if (!parsed.ok) throw invalid("the config", parsed.issues);
    const wait = waitOf(c);
    const { needsRestart } = await server.apply(parsed.value, wait);
    // Only what the body spells out: a section left out means "as the server runs", not "the defaults".
    return c.json({ status: server.status(), needsRestart: needsRestart.filter((f) => written(raw, f)) }, wait ? 200 : 202);
  });

  app.patch("/api/applications/:app/deployments/:name", async (c) => {
    const { app: appName, name } = c.req.param();
    findDeployment(server.status(), appName, name);
    const patch = validate(deploymentPatchSchema(), parseJSON(await readText(c.req.raw)));
    if (!patch.ok) throw invalid("the patch", patch.issues);
    const wait = waitOf(c);
    await server.patchDeployment(appName, name, patch.value, wait);
    return c.json(findDeployment(server.status(), appName, name), wait ? 200 : 202);
  });

  app.patch("/api/routes", async (c) => {
    const route = validate(routePatchSchema(), parseJSON(await readText(c.req.raw)));
    if (!route.ok) throw invalid("the route", route.issues);
    await server.patchRoute(route.value);
    return c.json({ routes: server.appliedConfig().routes });
  });

  app.post("/api/applications/:app/rollback", async (c) => {
    await server.rollback(c.req.param("app"));
    return c.json({ status: server.status() }, 202);
  });

  app.delete("/api/applications/:app", async (c) => {
    const wait = waitOf(c);
    await server.deleteApp(c.req.param("app"), wait);
    return c.json({ status: server.status() }, wait ? 200 : 202);
  });

  app.post("/api/shutdown", (c) => {
    // After the answer has left: the caller learns the shutdown started.
    setTimeout(opts.onShutdown, 10);
    return c.json({ message: "shutting down: requests in flight drain, then the server exits" }, 202);
  });

  app.get("/metrics", async (c) => {
    await server.freshListenerCounts();
    return c.body(`${metrics(server.status())}${[...server.requests.lines(), ...shmLines()].join("\n")}\n${opts.metrics?.render() ?? ""}`, 200, {
      "content-type": "text/plain; version=0.0.4; charset=utf-8",
    });
  });

  mountDashboardApi(app, dashboardSource(server, opts));
  return app;
}

/**
 * Serves the admin API on its own port. `idleTimeout: 0` because a PUT or
 * PATCH waits until the change serves, which may take minutes.
 *
 * @example
 * const admin = startAdmin(server, { host: "127.0.0.1", port: 8265, onShutdown: stop, errorDetail: "full" });
 * console.log(`admin API on ${admin.url}`);
 */
export function startAdmin(server: AdminTarget, opts: AdminOptions): { port: number; url: string; stop(): Promise<void> } {
  if (!opts.token && !isLoopback(opts.host)) {
    throw new ServeError(
      "invalid",
      `the admin API would listen on ${opts.host} without a token: set --admin-token-file (or SERVE_BIN_ADMIN_TOKEN), or keep admin.host on 127.0.0.1`,
    );
  }
  const app = createAdmin(server, opts);
  const guarded = (req: Request) => {
    const refused = refuseOrigin(req, { host: opts.host, port: http.port! });
    return refused ? closing(errorResponse(refused, opts.errorDetail)) : app.fetch(req);
  };
  const http = Bun.serve({
    hostname: opts.host,
    port: opts.port,
    fetch: capRequests(opts.maxConnections ?? adminDefaults.maxConnections, "proxy.maxConnections", guarded),
    idleTimeout: 0,
    // Bodies are counted by readBody, which answers a JSON 413; Bun's own limit would answer an empty one.
    maxRequestBodySize: Number.MAX_SAFE_INTEGER,
  });
  const port = http.port!;
  const host = opts.host === "0.0.0.0" ? "127.0.0.1" : opts.host === "::" ? "::1" : opts.host;
  return {
    port,
    url: `http://${host.includes(":") ? `[${host}]` : host}:${port}`,
    stop: () => http.stop(true),
  };
}

/** Fixed-length digests, so timingSafeEqual compares equal lengths and the token's length does not leak. */
function digest(s: string): Buffer {
  return createHash("sha256").update(s).digest();
}

function wantsYAML(header: string | undefined): boolean {
  return /\b(application|text)\/(x-)?yaml\b/.test(header ?? "");
}

function waitOf(c: Context): boolean {
  const w = c.req.query("wait");
  return !(w === "false" || w === "0");
}

function invalid(what: string, issues: Issue[]): ServeError {
  return new ServeError("invalid", `${what} is invalid; nothing was changed:\n${formatIssues(issues)}`, { issues });
}

function parseJSON(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ServeError("bad_request", `the body is not valid JSON (${(e as Error).message}); send a JSON object, e.g. {"numReplicas": 2}`);
  }
}

/** A whole config: YAML when the content type says so, else JSON; with the body as written. */
function readConfig(req: Request, text: string): { parsed: ConfigResult<ServeConfig>; raw: unknown } {
  if (!wantsYAML(req.headers.get("content-type") ?? undefined)) {
    const raw = parseJSON(text);
    return { parsed: parseConfig(raw), raw };
  }
  const parsed = parseYAML(text, "request body");
  return { parsed, raw: parsed.ok ? parseYAMLText(text) : undefined };
}

/** Whether `field` ("proxy.port") is set in the body as written. */
function written(raw: unknown, field: string): boolean {
  const [section, key] = field.split(".") as [string, string];
  const s = (raw as Record<string, unknown> | null)?.[section];
  return typeof s === "object" && s !== null && (s as Record<string, unknown>)[key] !== undefined;
}

function findDeployment(status: StatusJSON, app: string, name: string): StatusJSON["applications"][string]["deployments"][string] {
  const a = status.applications[app];
  if (!a) throw new ServeError("not_found", `no application "${app}"; applications: ${Object.keys(status.applications).join(", ") || "(none)"}`);
  const d = a.deployments[name];
  if (!d) throw new ServeError("not_found", `application ${app} has no deployment "${name}"; it has ${Object.keys(a.deployments).join(", ")}`);
  return d;
}

/** Prometheus text format (0.0.4), from the status JSON. */
function metrics(status: StatusJSON): string {
  const families = {
    up: ["serve_bin_up", "gauge", "1 while the serve-bin server runs."],
    app: ["serve_bin_application_status", "gauge", "1 for the application's current status, 0 for the others."],
    replicas: ["serve_bin_replicas", "gauge", "Replicas of a deployment, by state."],
    target: ["serve_bin_target_replicas", "gauge", "Replicas a deployment is meant to have."],
    restarts: ["serve_bin_replica_restarts_total", "counter", "Times a replica of the deployment died or failed and was restarted."],
  } as const;
  const samples: Record<keyof typeof families, string[]> = { up: ["serve_bin_up 1"], app: [], replicas: [], target: [], restarts: [] };
  for (const [app, a] of Object.entries(status.applications)) {
    for (const s of APP_STATES) samples.app.push(`${families.app[0]}${labels({ app, status: s })} ${a.status === s ? 1 : 0}`);
    for (const [deployment, d] of Object.entries(a.deployments)) {
      for (const state of REPLICA_STATES) {
        const n = d.replicas.filter((r) => r.state === state).length;
        samples.replicas.push(`${families.replicas[0]}${labels({ app, deployment, state })} ${n}`);
      }
      samples.target.push(`${families.target[0]}${labels({ app, deployment })} ${d.targetReplicas}`);
      samples.restarts.push(`${families.restarts[0]}${labels({ app, deployment })} ${d.restarts}`);
    }
  }
  const out: string[] = [];
  for (const [key, [name, type, help]] of Object.entries(families) as [keyof typeof families, (typeof families)[keyof typeof families]][]) {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...samples[key]);
  }
  return `${out.join("\n")}\n`;
}

/** This process's shared-memory traffic (the proxy's sends to ingress replicas). */
function shmLines(): string[] {
  const s = shmStats();
  const server = labels({ process: "server" });
  return [
    ...family("serve_bin_shm_transfers_total", "counter", "Binary values this process sent through shared memory.", [`serve_bin_shm_transfers_total${server} ${s.transfers}`]),
    ...family("serve_bin_shm_bytes_total", "counter", "Bytes this process sent through shared memory.", [`serve_bin_shm_bytes_total${server} ${s.bytes}`]),
    ...family("serve_bin_shm_fallbacks_total", "counter", "Values over the threshold that went inline because the arena was full or missing.", [
      `serve_bin_shm_fallbacks_total${server} ${s.fallbacks}`,
    ]),
  ];
}
