import { Hono } from "hono";
import { ServeError } from "../error.ts";
import { LazyAbort, type CancelToken } from "../api/request-context.ts";
import { pathOf } from "../api/dag-driver.ts";
import { packHeaders, unpackHeaders, wireRequestOf } from "../api/wire-request.ts";
import { HTTP_METHOD, type WireRequest, type WireResponse } from "../runtime/channel/messages.ts";
import type { ChunkSink, ReplicaClient, Settle } from "../runtime/replica-client.ts";
import { proxyConfigSchema } from "../config/schema.ts";
import { closing, readBody } from "./body-reader.ts";
import { Deadlines, type Deadline } from "./deadlines.ts";
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
  const watches = new Deadlines(CLIENT_WATCH_MS);
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
    // The route's headers, and the id user code saw in requestContext() and logs carry, go into the answer as it is built.
    const x = new Exchange(hit.headers, requestId, opts.requestTimeoutS, false);
    x.late = timeouts.add(x);
    // Until the answer's head, a client that goes away cancels the call (later, the body stream's cancel does).
    // Most requests are answered within CLIENT_WATCH_MS and never read req.signal (an AbortSignal and its
    // handler a request were 7% of the main process's CPU); one still running then starts watching it.
    const watch = watches.add(new ClientWatch(x, req));
    target.active?.add(x.ctl);
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
      hit.router.start({ method: HTTP_METHOD, args: [wire], requestId, cancel: x.ctl, sink: x }, x);
      res = await x.response;
    } catch (e) {
      res = errorResponse(e, opts.errorDetail);
    } finally {
      open--;
      x.late.cancel();
      watch.cancel();
      x.answered = true;
      target.active?.delete(x.ctl);
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

/**
 * How long a forwarded request runs before the proxy starts watching for its client going away. A
 * client that leaves sooner is noticed at this point (a signal read after the disconnect is already
 * aborted), so its call is cancelled at most this much later than it could have been.
 */
export const CLIENT_WATCH_MS = 50;

/** Starts watching a request's client once the request has run CLIENT_WATCH_MS (Deadlines calls `expire`). */
class ClientWatch {
  constructor(
    readonly x: Exchange,
    readonly req: Request,
  ) {}

  /** Not called once the request is answered: its watch is cancelled then. */
  expire(): void {
    const x = this.x;
    const signal = this.req.signal;
    if (signal.aborted) return x.clientGone();
    // A handler property, not a listener: half the cost, and nothing to remove (the flag retires it).
    signal.onabort = () => x.answered || x.clientGone();
  }
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
  const x = new Exchange([], null, 0, true);
  const late = (x.late = timeouts.add(x));
  const copy: WireRequest = { method: wire.method, url: wire.url, head: packHeaders(unpackHeaders(wire.head), [["x-serve-shadow", "1"]]), prefix: wire.prefix, accept: wire.accept, body: wire.body };
  router.start({ method: HTTP_METHOD, args: [copy], requestId: `${requestId}-shadow`, cancel: x.ctl, sink: x }, x);
  x.response
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

/** The answer as a Response, with the route's headers and the request id in place of any of the same name (as `headers.set` would). */
function fromWire(w: WireResponse, route: [string, string][], requestId: string | null, body: BodyInit | null = w.body as Uint8Array<ArrayBuffer> | null): Response {
  if (route.length === 0 && requestId === null) return new Response(body, { status: w.status, headers: w.headers });
  return new Response(body, { status: w.status, headers: headerRecord(w.headers, route, requestId) ?? headerPairs(w.headers, route, requestId) });
}

/** Whether the answer's own header `k` (lower case) gives way to one the proxy sets. */
const replaced = (k: string, route: [string, string][], requestId: string | null): boolean => (requestId !== null && k === "x-request-id") || route.some(([n]) => n === k);

/**
 * The answer's headers as a plain object: `Response` reads one faster than pairs (a new Response
 * with two headers, cold in a server between requests: a median 3.5-3.8 µs against 5.9-6.5).
 * Null when a name comes twice (set-cookie) or could not be an object's key; pairs then.
 */
function headerRecord(own: [string, string][], route: [string, string][], requestId: string | null): Record<string, string> | null {
  const out: Record<string, string> = {};
  for (const [name, value] of own) {
    const k = name.toLowerCase();
    if (replaced(k, route, requestId)) continue;
    if (k === "__proto__" || Object.hasOwn(out, k)) return null;
    out[k] = value;
  }
  for (const [k, value] of route) {
    if (k === "__proto__" || Object.hasOwn(out, k)) return null;
    out[k] = value;
  }
  if (requestId !== null) out["x-request-id"] = requestId;
  return out;
}

function headerPairs(own: [string, string][], route: [string, string][], requestId: string | null): [string, string][] {
  const headers: [string, string][] = [];
  for (const h of own) if (!replaced(h[0].toLowerCase(), route, requestId)) headers.push(h);
  for (const h of route) headers.push(h);
  if (requestId !== null) headers.push(["x-request-id", requestId]);
  return headers;
}

/**
 * One forwarded request, from the route's match to its answer: its cancel
 * token, its requestTimeoutS (Deadlines calls `expire`), the call's end
 * (Settle) and a streamed answer's chunks (ChunkSink), in one object with
 * methods rather than a closure and a promise per event. `response` settles
 * with the answer's head: a whole answer, or one whose body follows chunk by
 * chunk. A reader of that body that goes away (the client disconnected
 * mid-stream) cancels the call, so the producer stops.
 */
class Exchange implements ChunkSink, Settle {
  readonly ctl = new LazyAbort();
  /** The answer's head is out: a client that goes away now cancels through the body stream. */
  answered = false;
  late: Deadline = NO_DEADLINE;
  readonly response: Promise<Response>;
  #resolve!: (r: Response) => void;
  #reject!: (e: unknown) => void;
  #stream: ReadableStreamDefaultController<Uint8Array> | null = null;
  #started = false;
  #ended = false;
  #early: Uint8Array[] | null = null;
  #client: ReplicaClient | null = null;
  #id = 0;

  constructor(
    /** The route's headers, set on the answer. */
    readonly route: [string, string][],
    /** The request id, set on the answer (null: none, for a shadow copy). */
    readonly requestId: string | null,
    readonly timeoutS: number,
    readonly shadow: boolean,
  ) {
    // withResolvers: no executor closure, and no scope for it, per request.
    const { promise, resolve, reject } = Promise.withResolvers<Response>();
    this.response = promise;
    this.#resolve = resolve;
    this.#reject = reject;
  }

  /** requestTimeoutS passed before the answer's head. */
  expire(): void {
    this.ctl.abort(
      this.shadow
        ? new ServeError("timeout", "the shadow copy took longer than proxy.requestTimeoutS")
        : new ServeError("timeout", `the request took longer than proxy.requestTimeoutS (${this.timeoutS} s); raise it or make the graph faster`),
    );
  }

  clientGone(): void {
    this.ctl.abort(this.shadow ? new ServeError("cancelled", "the shadow copy was abandoned") : new ServeError("cancelled", "the client went away"));
  }

  /** Where a streamed body asks for more chunks, once the call is out. */
  sent(client: ReplicaClient, id: number): void {
    this.#client = client;
    this.#id = id;
  }

  chunk(v: unknown): void {
    if (!this.#started) {
      this.#started = true;
      if (!this.shadow) this.late.cancel();
      const body = new ReadableStream<Uint8Array>({
        start: (c) => {
          this.#stream = c;
          for (const p of this.#early ?? []) c.enqueue(p);
          if (this.#ended) c.close();
        },
        pull: () => this.#client?.credit(this.#id, 1),
        cancel: () => this.clientGone(),
      });
      let res: Response;
      try {
        res = fromWire(v as WireResponse, this.route, this.requestId, body);
      } catch (e) {
        this.clientGone(); // nobody will read the stream: stop its producer
        return this.#reject(e);
      }
      return this.#resolve(res);
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
    if (!this.#started) return this.#reject(e);
    try {
      this.#stream?.error(e);
    } catch {}
  }

  /** The call's result: a whole answer, unless it streamed. A head the Response cannot take fails the request, not the replica's answer path. */
  resolve(v: unknown): void {
    if (this.#started || !v) return;
    let res: Response;
    try {
      res = fromWire(v as WireResponse, this.route, this.requestId);
    } catch (e) {
      return this.#reject(e);
    }
    this.#resolve(res);
  }

  reject(e: unknown): void {
    if (!this.#started) this.#reject(e);
  }
}

const NO_DEADLINE: Deadline = { cancel() {} };
