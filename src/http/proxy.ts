import { Hono } from "hono";
import { ServeError } from "../error.ts";
import { LazyAbort, type CancelToken } from "../api/request-context.ts";
import { pathOf } from "../api/dag-driver.ts";
import { packHeaders, unpackHeaders, wireRequestOf } from "../api/wire-request.ts";
import { HTTP_METHOD, type WireRequest, type WireResponse } from "../runtime/channel/messages.ts";
import type { ChunkSink, ReplicaClient } from "../runtime/replica-client.ts";
import { proxyConfigSchema } from "../config/schema.ts";
import { closing, readBody } from "./body-reader.ts";
import { Deadlines } from "./deadlines.ts";
import { overCapacity } from "./connection-cap.ts";
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
  // Read here, not at import: an ingress replica that never listens does not build the schema.
  const proxyDefaults = proxyConfigSchema().parse({});
  const limits = {
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
  // One timer per listener for each limit, not one per request (see Deadlines).
  const timeouts = new Deadlines(opts.requestTimeoutS * 1000);
  const bodyLimits = { ...limits, deadlines: new Deadlines(limits.timeoutS * 1000) };
  const observed = (app: string, t0: number, res: Response): Response => {
    target.metrics.observe(app, res.status, (performance.now() - t0) / 1000);
    return res;
  };
  // The cap on requests held at once (proxy.maxConnections), counted here rather than by a wrapping
  // async function: one promise and one turn of the microtask queue less per request.
  const maxOpen = opts.maxConnections ?? proxyDefaults.maxConnections;
  let open = 0;
  /** A request past the cap's check (`open` counts it): it counts down when answered. */
  const forwardRequest = async (req: Request, path: string): Promise<Response> => {
    const t0 = performance.now();
    const hit = target.routes.match(path, req.headers);
    if (!hit) {
      open--;
      return observed("", t0, errorResponse(new ServeError("not_found", `no application serves ${path}; routes: ${target.routes.prefixes().join(", ") || "(none yet)"}`), opts.errorDetail));
    }
    const requestId = req.headers.get("x-request-id") ?? nextRequestId();
    const ctl = new LazyAbort();
    const late = timeouts.add(() => ctl.abort(new ServeError("timeout", `the request took longer than proxy.requestTimeoutS (${opts.requestTimeoutS} s); raise it or make the graph faster`)));
    // Until the answer's head: a client that goes away cancels the call (later, the body stream's cancel does).
    let answered = false;
    const onClientGone = () => ctl.abort(new ServeError("cancelled", "the client went away"));
    // A handler property, not a listener: half the cost, and nothing to remove (the flag retires it).
    req.signal.onabort = () => answered || onClientGone();
    target.active?.add(ctl);
    let res: Response;
    try {
      let body: Uint8Array | null = null;
      if (req.method !== "GET" && req.method !== "HEAD") {
        try {
          body = await readBody(req, bodyLimits);
        } catch (e) {
          return observed(hit.app, t0, closing(errorResponse(e, opts.errorDetail)));
        }
      }
      const wire = wireRequestOf(req, hit.prefix, body);
      if (hit.shadow) shadow(hit.shadow, wire, requestId, timeouts);
      // The route's headers, and the id user code saw in requestContext() and logs carry, go into the answer as it is built.
      const extra: [string, string][] = hit.headers.length ? [...hit.headers, ["x-request-id", requestId]] : [["x-request-id", requestId]];
      res = await forward(hit.router, wire, requestId, ctl, late.cancel, onClientGone, extra);
    } catch (e) {
      res = errorResponse(e, opts.errorDetail);
    } finally {
      open--;
      late.cancel();
      answered = true;
      target.active?.delete(ctl);
    }
    return observed(hit.app, t0, res);
  };
  const ownEndpoint = async (req: Request): Promise<Response> => {
    try {
      return await own.fetch(req);
    } finally {
      open--;
    }
  };
  const fetch = (req: Request): Response | Promise<Response> => {
    if (open >= maxOpen) return overCapacity(maxOpen, "proxy.maxConnections");
    open++;
    const path = pathOf(req.url);
    return path === "/-" || path.startsWith("/-/") ? ownEndpoint(req) : forwardRequest(req, path);
  };
  return {
    fetch,
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
function shadow(v: Variant, wire: WireRequest, requestId: string, timeouts: Deadlines): void {
  const router = v.router;
  const inflight = shadowInflight.get(router) ?? 0;
  if (inflight >= Math.max(1, router.capacity)) return;
  shadowInflight.set(router, inflight + 1);
  const ctl = new LazyAbort();
  const late = timeouts.add(() => ctl.abort(new ServeError("timeout", "the shadow copy took longer than proxy.requestTimeoutS")));
  const copy: WireRequest = { method: wire.method, url: wire.url, head: packHeaders(unpackHeaders(wire.head), [["x-serve-shadow", "1"]]), prefix: wire.prefix, accept: wire.accept, body: wire.body };
  const stop = () => ctl.abort(new ServeError("cancelled", "the shadow copy was abandoned"));
  forward(router, copy, `${requestId}-shadow`, ctl, () => {}, stop, [])
    .then(async (res) => {
      if (!res.body) return;
      for await (const _ of res.body);
    })
    .catch(() => {})
    .finally(() => {
      late.cancel();
      shadowInflight.set(router, (shadowInflight.get(router) ?? 1) - 1);
    });
}

/** The answer as a Response, with `extra` headers in place of any of the same name (as `headers.set` would). */
function fromWire(w: WireResponse, extra: [string, string][], body: BodyInit | null = w.body as Uint8Array<ArrayBuffer> | null): Response {
  if (extra.length === 0) return new Response(body, { status: w.status, headers: w.headers });
  const headers: [string, string][] = [];
  for (const h of w.headers) if (!extra.some(([k]) => k === h[0].toLowerCase())) headers.push(h);
  for (const h of extra) headers.push(h);
  return new Response(body, { status: w.status, headers });
}

/**
 * Calls the ingress; a streamed answer becomes a Response whose body follows
 * chunk by chunk. `onCancel` runs when the body's reader goes away (the client
 * disconnected mid-stream), so the caller can abort the call and stop the producer.
 */
function forward(router: CallTarget, wire: WireRequest, requestId: string, cancel: CancelToken, onHead: () => void, onCancel: () => void, extra: [string, string][]): Promise<Response> {
  return new Promise<Response>((resolve, reject) => {
    const f = new Forwarding(resolve, reject, onHead, onCancel, extra);
    router.call({ method: HTTP_METHOD, args: [wire], requestId, cancel, sink: f, onSent: f.sent }).then(
      (v) => f.done(v),
      (e) => f.failed(e),
    );
  });
}

/** One forwarded request's answer as it arrives: one object with methods, not a closure per event. */
class Forwarding implements ChunkSink {
  #stream: ReadableStreamDefaultController<Uint8Array> | null = null;
  #started = false;
  #ended = false;
  #early: Uint8Array[] | null = null;
  #credit: ((n: number) => void) | null = null;

  constructor(
    readonly resolve: (r: Response) => void,
    readonly reject: (e: unknown) => void,
    readonly onHead: () => void,
    readonly onCancel: () => void,
    readonly extra: [string, string][],
  ) {}

  /** Where a streamed body asks for more chunks, once the call is out. */
  readonly sent = (client: ReplicaClient, id: number): void => {
    this.#credit = (n) => client.credit(id, n);
  };

  chunk(v: unknown): void {
    if (!this.#started) {
      this.#started = true;
      this.onHead();
      const body = new ReadableStream<Uint8Array>({
        start: (c) => {
          this.#stream = c;
          for (const p of this.#early ?? []) c.enqueue(p);
          if (this.#ended) c.close();
        },
        pull: () => this.#credit?.(1),
        cancel: this.onCancel,
      });
      return this.resolve(fromWire(v as WireResponse, this.extra, body));
    }
    if (this.#stream) this.#stream.enqueue(v as Uint8Array);
    else (this.#early ??= []).push(v as Uint8Array);
  }

  end(): void {
    this.#ended = true;
    try {
      this.#stream?.close();
    } catch {}
  }

  fail(e: ServeError): void {
    if (!this.#started) return this.reject(e);
    try {
      this.#stream?.error(e);
    } catch {}
  }

  /** The call's result: a whole answer, unless it streamed. */
  done(v: unknown): void {
    if (!this.#started && v) this.resolve(fromWire(v as WireResponse, this.extra));
  }

  failed(e: unknown): void {
    if (!this.#started) this.reject(e);
  }
}
