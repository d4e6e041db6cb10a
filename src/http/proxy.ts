import { Hono } from "hono";
import { ServeError } from "../error.ts";
import { LazyAbort, type CancelToken } from "../api/request-context.ts";
import { pathOf } from "../api/dag-driver.ts";
import { packHeaders, unpackHeaders } from "../api/wire-request.ts";
import { HTTP_METHOD, type WireRequest, type WireResponse } from "../runtime/channel/messages.ts";
import type { ReplicaClient } from "../runtime/replica-client.ts";
import { proxyConfigSchema } from "../config/schema.ts";
import { closing, readBody } from "./body-reader.ts";
import { capRequests } from "./connection-cap.ts";
import { errorResponse, type ErrorDetail } from "./error-response.ts";
import { RouteTable, type CallTarget, type RouteHit, type Variant } from "./route-table.ts";
import type { RequestMetrics } from "./request-metrics.ts";

export interface ProxyOptions {
  requestTimeoutS: number;
  maxBodyBytes: number;
  errorDetail: ErrorDetail;
  /** Seconds the whole body may take to arrive (capped by requestTimeoutS). Default: proxy.bodyTimeoutS's. */
  bodyTimeoutS?: number;
  /** Requests held at once; past it 503. Default: proxy.maxConnections's. */
  maxConnections?: number;
}

const proxyDefaults = proxyConfigSchema.parse({});

/** What the proxy needs from the server: where a path goes, health, and where to count. */
export interface ProxyTarget {
  routes: RouteTable;
  metrics: RequestMetrics;
  /** 200 when every application has a serving ingress replica. */
  healthy(): boolean;
  /** Where each request in flight is held while it runs (an ingress listener aborts them when its drain time is up). */
  active?: Set<{ abort(reason: unknown): void }>;
}

/** What `Bun.serve` takes from the proxy: its handler and the limits it enforces itself. */
export interface ProxyListener {
  fetch(req: Request): Response | Promise<Response>;
  /** The proxy counts body bytes itself (and answers a JSON 413): Bun's own check would answer an empty one. */
  maxRequestBodySize: number;
  /** A request may legitimately wait minutes for its answer; the proxy's own timers bound it. */
  idleTimeout: 0;
}

/**
 * The data plane: matches the route (longest prefix, whole segments), sends
 * the request to a replica of the application's ingress, and returns its
 * answer. Enforces requestTimeoutS (504), bodyTimeoutS (408), maxBodyBytes
 * (413) and maxConnections (503) itself. Serve it with
 * `Bun.serve({ hostname, port, ...createProxy(target, config.proxy) })`.
 */
export function createProxy(target: ProxyTarget, opts: ProxyOptions): ProxyListener {
  const bodyLimits = {
    maxBytes: opts.maxBodyBytes,
    timeoutS: Math.min(opts.bodyTimeoutS ?? proxyDefaults.bodyTimeoutS, opts.requestTimeoutS),
    maxSetting: "proxy.maxBodyBytes",
    timeoutSetting: (opts.bodyTimeoutS ?? proxyDefaults.bodyTimeoutS) <= opts.requestTimeoutS ? "proxy.bodyTimeoutS" : "proxy.requestTimeoutS",
  };
  // Hono serves serve-bin's own endpoints; the data path skips its router and
  // context, which cost a measurable share of a forwarded request.
  const own = new Hono();
  own.get("/-/healthz", (c) => (target.healthy() ? c.text("ok") : c.text("not ready", 503)));
  own.get("/-/routes", (c) => c.json(target.routes.describe()));
  own.all("*", () => errorResponse(new ServeError("not_found", '"/-/" is reserved for serve-bin\'s own endpoints: /-/healthz and /-/routes')));
  const forwardRequest = async (req: Request, path: string): Promise<Response> => {
    const t0 = performance.now();
    const hit = target.routes.match(path, req.headers);
    const res = await forwardHit(req, path, hit);
    target.metrics.observe(hit?.app ?? "", res.status, (performance.now() - t0) / 1000);
    return res;
  };
  const forwardHit = async (req: Request, path: string, hit: RouteHit | null): Promise<Response> => {
    if (!hit) return errorResponse(new ServeError("not_found", `no application serves ${path}; routes: ${target.routes.prefixes().join(", ") || "(none yet)"}`), opts.errorDetail);
    const requestId = req.headers.get("x-request-id") ?? nextRequestId();
    const ctl = new LazyAbort();
    const timer = setTimeout(
      () => ctl.abort(new ServeError("timeout", `the request took longer than proxy.requestTimeoutS (${opts.requestTimeoutS} s); raise it or make the graph faster`)),
      opts.requestTimeoutS * 1000,
    );
    const onClientGone = () => ctl.abort(new ServeError("cancelled", "the client went away"));
    req.signal.addEventListener("abort", onClientGone, { once: true });
    target.active?.add(ctl);
    try {
      let body: Uint8Array | null = null;
      if (req.method !== "GET" && req.method !== "HEAD") {
        try {
          body = await readBody(req, bodyLimits);
        } catch (e) {
          return closing(errorResponse(e, opts.errorDetail));
        }
      }
      const wire: WireRequest = { method: req.method, url: req.url, head: packHeaders(req.headers), prefix: hit.prefix, accept: req.headers.get("accept") ?? "", body };
      if (hit.shadow) shadow(hit.shadow, wire, requestId, opts.requestTimeoutS);
      const res = await forward(hit.router, wire, requestId, ctl, () => clearTimeout(timer), onClientGone);
      for (const [k, v] of hit.headers) res.headers.set(k, v);
      res.headers.set("x-request-id", requestId); // the id user code saw in requestContext() and logs carry
      return res;
    } catch (e) {
      return errorResponse(e, opts.errorDetail);
    } finally {
      clearTimeout(timer);
      req.signal.removeEventListener("abort", onClientGone);
      target.active?.delete(ctl);
    }
  };
  const fetch = (req: Request) => {
    const path = pathOf(req.url);
    return path === "/-" || path.startsWith("/-/") ? own.fetch(req) : forwardRequest(req, path);
  };
  return {
    fetch: capRequests(opts.maxConnections ?? proxyDefaults.maxConnections, "proxy.maxConnections", fetch),
    maxRequestBodySize: Number.MAX_SAFE_INTEGER,
    idleTimeout: 0,
  };
}

let requestCounter = 0;
const requestPrefix = `${process.pid.toString(36)}-${Date.now().toString(36)}-`;

/** A request id unique to this server run, short enough to be cheap on every hop. */
function nextRequestId(): string {
  return requestPrefix + (++requestCounter).toString(36);
}

/** Shadow copies in flight per shadow ingress. */
const shadowInflight = new WeakMap<CallTarget, number>();

/**
 * Sends a copy of the request to the route's shadow application and discards
 * its answer (a streamed one is read to the end). Nothing of it reaches the
 * caller: not its errors, not its latency. Copies beyond what the shadow's
 * replicas take at once are dropped, not queued, so a slow shadow cannot pile
 * up work in the proxy.
 */
function shadow(v: Variant, wire: WireRequest, requestId: string, timeoutS: number): void {
  const router = v.router;
  const inflight = shadowInflight.get(router) ?? 0;
  if (inflight >= Math.max(1, router.capacity)) return;
  shadowInflight.set(router, inflight + 1);
  const ctl = new LazyAbort();
  const timer = setTimeout(() => ctl.abort(new ServeError("timeout", "the shadow copy took longer than proxy.requestTimeoutS")), timeoutS * 1000);
  const copy: WireRequest = { ...wire, head: packHeaders(unpackHeaders(wire.head), [["x-serve-shadow", "1"]]) };
  const stop = () => ctl.abort(new ServeError("cancelled", "the shadow copy was abandoned"));
  forward(router, copy, `${requestId}-shadow`, ctl, () => {}, stop)
    .then(async (res) => {
      if (!res.body) return;
      for await (const _ of res.body);
    })
    .catch(() => {})
    .finally(() => {
      clearTimeout(timer);
      shadowInflight.set(router, (shadowInflight.get(router) ?? 1) - 1);
    });
}

function fromWire(w: WireResponse, body: BodyInit | null = w.body as Uint8Array<ArrayBuffer> | null): Response {
  return new Response(body, { status: w.status, headers: w.headers });
}

/**
 * Calls the ingress; a streamed answer becomes a Response whose body follows
 * chunk by chunk. `onCancel` runs when the body's reader goes away (the client
 * disconnected mid-stream), so the caller can abort the call and stop the producer.
 */
function forward(router: CallTarget, wire: WireRequest, requestId: string, cancel: CancelToken, onHead: () => void, onCancel: () => void): Promise<Response> {
  return new Promise<Response>((resolve, reject) => {
    let stream: ReadableStreamDefaultController<Uint8Array> | null = null;
    let started = false;
    let credit = (_n: number) => {};
    const early: Uint8Array[] = [];
    let ended = false;
    const sink = {
      chunk(v: unknown) {
        if (!started) {
          started = true;
          onHead();
          const body = new ReadableStream<Uint8Array>({
            start(c) {
              stream = c;
              for (const p of early) c.enqueue(p);
              if (ended) c.close();
            },
            pull: () => credit(1),
            cancel: onCancel,
          });
          return resolve(fromWire(v as WireResponse, body));
        }
        if (stream) stream.enqueue(v as Uint8Array);
        else early.push(v as Uint8Array);
      },
      end() {
        ended = true;
        try {
          stream?.close();
        } catch {}
      },
      fail(e: ServeError) {
        if (!started) return reject(e);
        try {
          stream?.error(e);
        } catch {}
      },
    };
    const onSent = (client: ReplicaClient, id: number) => (credit = (n) => client.credit(id, n));
    router.call({ method: HTTP_METHOD, args: [wire], requestId, cancel, sink, onSent }).then(
      (v) => {
        if (!started && v) resolve(fromWire(v as WireResponse));
      },
      (e) => {
        if (!started) reject(e);
      },
    );
  });
}
