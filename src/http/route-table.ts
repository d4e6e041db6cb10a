import { longestFirst, underPrefix } from "../api/route-prefix.ts";
import type { Router } from "../runtime/router.ts";

/** Where a route's requests go: a Router to an application's ingress replicas, or the ingress running in this very process. */
export type CallTarget = Pick<Router, "call" | "start" | "capacity">;

export interface Variant {
  app: string;
  weight: number;
  router: CallTarget;
}

/** One route prefix: one application, or a weighted split between several. */
export interface RouteEntry {
  prefix: string;
  variants: Variant[];
  stickyHeader?: string;
  shadow?: Variant;
}

export interface RouteHit {
  prefix: string;
  app: string;
  router: CallTarget;
  /** Headers the response gets (x-serve-variant on a split). */
  headers: [string, string][];
  shadow?: Variant;
}

/**
 * An application's name as a header value. Names may be any Unicode without
 * spaces or "/", but a header carries only visible ASCII (and Latin-1, which
 * clients read differently): a name with anything else is sent
 * percent-encoded as UTF-8, as `encodeURIComponent` writes it.
 *
 * @example variantHeader("canary") // "canary"; variantHeader("モデル") // "%E3%83%A2%E3%83%87%E3%83%AB"
 */
export function variantHeader(app: string): string {
  return /^[\x21-\x7e]*$/.test(app) ? app : encodeURIComponent(app);
}

/** Unit interval from a string, stable across processes and restarts. */
function unit(key: string): number {
  return Number(Bun.hash(key) % 1_000_000n) / 1_000_000;
}

/**
 * Route prefixes to applications. Matches whole path segments, longest
 * prefix first; a split picks a variant by weight (by the sticky header's
 * value when set, so one key always lands on one variant).
 */
export class RouteTable {
  #entries: (RouteEntry & { live: Variant[] })[] = [];

  set(entries: RouteEntry[]): void {
    // The variants that take traffic, found once per routing change rather than per request.
    this.#entries = longestFirst(entries, (e) => e.prefix).map((e) => ({ ...e, live: e.variants.filter((v) => v.weight > 0) }));
  }

  match(path: string, headers: Headers): RouteHit | null {
    for (const e of this.#entries) {
      if (!underPrefix(path, e.prefix)) continue;
      const live = e.live;
      if (live.length === 0) return null;
      let v = live[0]!;
      if (live.length > 1) {
        const total = live.reduce((a, x) => a + x.weight, 0);
        const key = e.stickyHeader ? headers.get(e.stickyHeader) : null;
        let point = (key ? unit(key) : Math.random()) * total;
        for (const x of live) if ((point -= x.weight) < 0 || x === live[live.length - 1]) { v = x; break; }
      }
      const split = e.variants.length > 1 || e.shadow !== undefined;
      return { prefix: e.prefix, app: v.app, router: v.router, headers: split ? [["x-serve-variant", variantHeader(v.app)]] : [], shadow: e.shadow };
    }
    return null;
  }

  prefixes(): string[] {
    return this.#entries.map((e) => e.prefix);
  }

  /** For GET /-/routes: prefix → application (or its split). */
  describe(): Record<string, string | { split: Record<string, number>; stickyHeader?: string; shadow?: string }> {
    const out: ReturnType<RouteTable["describe"]> = {};
    for (const e of [...this.#entries].sort((a, b) => a.prefix.localeCompare(b.prefix))) {
      out[e.prefix] =
        e.variants.length === 1 && !e.shadow
          ? e.variants[0]!.app
          : { split: Object.fromEntries(e.variants.map((v) => [v.app, v.weight])), ...(e.stickyHeader && { stickyHeader: e.stickyHeader }), ...(e.shadow && { shadow: e.shadow.app }) };
    }
    return out;
  }
}
