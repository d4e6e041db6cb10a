/**
 * A data-plane listener's routes away from the controller — a cluster proxy
 * on another host, or an ingress replica listening on the data-plane port
 * itself: the controller's snapshot (every application's replicas, prefixes
 * and split routes) turned into the same RouteTable the main process routes
 * by, with one RemoteInvoker per application dialling its replicas (TCP or
 * unix sockets). Without the controller the last snapshot stays (and DNS may
 * refresh its replicas, see swarm/dns-routes.ts).
 */
import type { ProxySnapshot, RoutingTable } from "../runtime/channel/messages.ts";
import type { BinaryChannel } from "../runtime/channel/connection.ts";
import type { LinkOptions } from "../runtime/channel/transport.ts";
import { RemoteInvoker } from "../runtime/remote-invoker.ts";
import type { Router } from "../runtime/router.ts";
import { RouteTable, type CallTarget, type RouteEntry, type Variant } from "../http/route-table.ts";

/**
 * An application whose ingress runs in this very process (an ingress
 * replica's own listener): its requests go to `target`, and `target.siblings`
 * routes to its other ingress replicas (the one at `socket` left out).
 */
export interface LocalApp {
  app: string;
  socket: string;
  target: CallTarget & { siblings: Router | null };
}

export class ProxyRoutes {
  readonly routes = new RouteTable();
  readonly #invokers = new Map<string, RemoteInvoker>();
  #version = 0;
  #last: ProxySnapshot | null = null;

  /** `binary`: shared memory for large bodies (a replica's arena); `local`: the application served in this process. */
  constructor(
    readonly links: LinkOptions,
    readonly binary: BinaryChannel = {},
    readonly local?: LocalApp,
  ) {}

  /** The snapshot routed by now (null before the first). */
  get snapshot(): ProxySnapshot | null {
    return this.#last;
  }

  /** Every application has at least one ingress replica to send to. */
  serving(): boolean {
    return this.#last !== null && this.#last.apps.every((a) => (a.table.deployments[a.ingress]?.replicas.length ?? 0) > 0);
  }

  apply(snapshot: ProxySnapshot): void {
    this.#last = snapshot;
    const names = new Set(snapshot.apps.map((a) => a.name));
    for (const [name, inv] of this.#invokers) {
      if (names.has(name)) continue;
      inv.close();
      this.#invokers.delete(name);
    }
    const local = this.local;
    for (const a of snapshot.apps) {
      const table = a.name === local?.app ? withoutReplica(a.table, a.ingress, local.socket) : a.table;
      this.#invoker(a.name).update(this.#renumber(table));
      if (a.name === local?.app) local.target.siblings = this.#invoker(a.name).router(a.ingress);
    }
    const variant = (app: string, weight: number): Variant | undefined => {
      const a = snapshot.apps.find((x) => x.name === app);
      return a && { app, weight, router: app === local?.app ? local.target : this.#invoker(app).router(a.ingress) };
    };
    const split = new Set(snapshot.routes.map((r) => r.routePrefix));
    const entries: RouteEntry[] = snapshot.apps.filter((a) => !split.has(a.routePrefix)).map((a) => ({ prefix: a.routePrefix, variants: [variant(a.name, 1)!] }));
    for (const r of snapshot.routes) {
      const variants = Object.entries(r.split).flatMap(([app, w]) => variant(app, w) ?? []);
      entries.push({ prefix: r.routePrefix, variants, stickyHeader: r.stickyHeader, shadow: r.shadow ? variant(r.shadow, 1) : undefined });
    }
    this.routes.set(entries);
  }

  /** Replaces one application's replicas (the DNS fallback), keeping the rest of the snapshot. */
  replaceTable(app: string, table: RoutingTable): void {
    if (!this.#last) return;
    this.apply({ ...this.#last, apps: this.#last.apps.map((a) => (a.name === app ? { ...a, table } : a)) });
  }

  /** A restarted controller numbers its snapshots from 1 again: this side keeps its own count. */
  #renumber(table: RoutingTable): RoutingTable {
    return { ...table, version: ++this.#version };
  }

  #invoker(app: string): RemoteInvoker {
    let inv = this.#invokers.get(app);
    if (!inv) this.#invokers.set(app, (inv = new RemoteInvoker(this.binary, this.links)));
    return inv;
  }

  close(): void {
    for (const inv of this.#invokers.values()) inv.close();
  }
}

/** The table with one replica of the ingress left out (the one in this process). */
function withoutReplica(table: RoutingTable, ingress: string, socket: string): RoutingTable {
  const route = table.deployments[ingress];
  if (!route) return table;
  return { ...table, deployments: { ...table.deployments, [ingress]: { ...route, replicas: route.replicas.filter((r) => r.socket !== socket) } } };
}
