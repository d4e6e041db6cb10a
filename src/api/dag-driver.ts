import { ServeError } from "../error.ts";
import { bodyParserOf, jsonRequest, type HttpAdapter } from "./adapters.ts";
import { graphAcceptingDeployment, type Deployment } from "./deployment.ts";
import { toResponse, toWireResponse, type WireResponseLike } from "./http-result.ts";
import { ROUTE_PREFIX_HEADER, longestFirst, underPrefix } from "./route-prefix.ts";
import { toRequest, type WireRequest } from "./wire-request.ts";
import type { ClassNode, DAGNode } from "./nodes.ts";

/** A bound graph as the DAGDriver receives it: run it with the request's input. */
export interface GraphRunner {
  run(args: unknown[]): Promise<unknown>;
}

export interface DAGDriverOptions {
  /** Turns the HTTP request into the graph's input (default: jsonRequest). */
  httpAdapter?: HttpAdapter;
}


/**
 * The replica calls this method of an ingress, when it has one, with the
 * request as it came off the wire: the DAGDriver skips building a Web Request
 * and Response when its adapter can read the body bytes directly.
 */
export const WIRE_HANDLER = Symbol.for("serve-bin.wire-handler");
export type WireHandler = (w: WireRequest) => Promise<WireResponseLike | Response>;

function isRunner(v: unknown): v is GraphRunner {
  return typeof v === "object" && v !== null && typeof (v as GraphRunner).run === "function";
}

class DAGDriverImpl {
  readonly #single?: GraphRunner;
  #routes: [string, GraphRunner][] = [];
  readonly #adapter: HttpAdapter;
  /** The adapter's body-only form, when it has one. */
  readonly #parse: ((body: Uint8Array) => unknown) | undefined;

  constructor(dags: GraphRunner | Record<string, GraphRunner>, opts: DAGDriverOptions = {}) {
    if (isRunner(dags)) this.#single = dags;
    else {
      for (const [route, runner] of Object.entries(dags)) {
        if (!route.startsWith("/")) throw new ServeError("build", `DAGDriver route "${route}" must start with "/"`);
        if (!isRunner(runner)) throw new ServeError("build", `DAGDriver route "${route}" must be a graph node`);
        this.#routes.push([route.replace(/\/+$/, "") || "/", runner]);
      }
      this.#routes = longestFirst(this.#routes, ([r]) => r);
    }
    this.#adapter = opts.httpAdapter ?? jsonRequest;
    this.#parse = bodyParserOf(this.#adapter);
  }

  #match(path: string): GraphRunner {
    if (this.#single) return this.#single;
    for (const [route, runner] of this.#routes) {
      if (underPrefix(path, route)) return runner;
    }
    throw new ServeError("not_found", `no graph at ${path}; this DAGDriver serves ${this.#routes.map(([r]) => r).join(", ")}`);
  }

  /** Not an async function: a body parsed at once goes straight to the graph (an async frame and two awaits per request less). */
  [WIRE_HANDLER](w: WireRequest): Promise<WireResponseLike | Response> {
    const parse = this.#parse;
    if (!parse) return this.fetch(toRequest(w));
    try {
      const path = pathOf(w.url);
      const runner = this.#match(w.prefix === "/" ? path : path.slice(w.prefix.length) || "/");
      const input = parse(w.body ?? EMPTY);
      const out = input instanceof Promise ? input.then((x) => runner.run([x])) : runner.run([input]);
      return out.then((v) => toWireResponse(v, w.accept) ?? toResponse(v, w.accept));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Applies the HTTP adapter and runs the matching graph. */
  async fetch(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const prefix = req.headers.get(ROUTE_PREFIX_HEADER) ?? "/";
    const rest = prefix === "/" ? url.pathname : url.pathname.slice(prefix.length) || "/";
    const runner = this.#match(rest);
    const input = await this.#adapter(req);
    return toResponse(await runner.run([input]), req.headers.get("accept") ?? "");
  }

  /** Runs the graph (of a single-graph driver) on one input, for handles. */
  predict(input: unknown): Promise<unknown> {
    return this.#match("/").run([input]);
  }

  /** Runs the graph at `route` on one input. */
  predictWithRoute(route: string, input: unknown): Promise<unknown> {
    return this.#match(route).run([input]);
  }

  /** Runs the graph with positional arguments, as `execute` does. */
  __call__(...args: unknown[]): Promise<unknown> {
    return this.#match("/").run(args);
  }
}

const EMPTY = new Uint8Array(0);

/** The path of an absolute URL, without building a URL object. */
export function pathOf(url: string): string {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  if (start < 0) return "/";
  let end = url.indexOf("?", start);
  const hash = url.indexOf("#", start);
  if (hash >= 0 && (end < 0 || hash < end)) end = hash;
  return end < 0 ? url.slice(start) : url.slice(start, end);
}

type DriverBind = {
  bind(dags: DAGNode<any> | Record<string, DAGNode<any>>, opts?: DAGDriverOptions): ClassNode<DAGDriverImpl>;
  options(o: Parameters<Deployment["options"]>[0]): DriverBind;
  readonly name: string;
};

/**
 * The ingress that serves a graph over HTTP: applies the HTTP adapter, then
 * walks the graph. Scale it like any deployment.
 * @example
 * export default DAGDriver.options({ routePrefix: "/my-dag" }).bind(dag, { httpAdapter: jsonRequest });
 */
export const DAGDriver = graphAcceptingDeployment(DAGDriverImpl, { name: "DAGDriver", maxOngoingRequests: 100 }) as unknown as DriverBind;
