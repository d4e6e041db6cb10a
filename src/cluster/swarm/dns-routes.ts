/**
 * The fallback when the controller is gone (SPEC §9): Swarm's DNS names every
 * task of a service (`tasks.<service>`, endpoint_mode dnsrr), so a proxy or a
 * replica refreshes the replicas of its last snapshot from it — tasks the
 * engine replaced meanwhile become reachable without a controller. The
 * swarm's virtual IP is not used: it needs IPVS, and callers route to task
 * addresses themselves (power of two choices).
 */
import { Resolver } from "node:dns/promises";
import type { RoutingTable } from "../../runtime/channel/messages.ts";
import { tcpAddress } from "../../runtime/channel/transport.ts";

/** How long the controller may be away before DNS is asked, and how often then. */
const GRACE_MS = 3000;
const EVERY_MS = 5000;

export interface DnsFallbackOptions {
  /** The applications' last snapshots. */
  tables(): { app: string; table: RoutingTable }[];
  /** Takes a refreshed table. */
  put(app: string, table: RoutingTable): void;
  /** The DNS name that lists a deployment's tasks, e.g. `tasks.default-model`. */
  nameOf(app: string, deployment: string): string;
  /** The port replicas listen on. */
  port: number;
}

/** Task addresses of one name; empty when the name does not resolve (the controller's list is kept then). */
async function tasksOf(name: string): Promise<string[]> {
  try {
    // A fresh resolver each time: Swarm's DNS changes as tasks come and go, and answers would be cached for their TTL (600 s).
    return (await new Resolver().resolve4(name)).sort();
  } catch {
    return [];
  }
}

export class DnsFallback {
  #timer: ReturnType<typeof setTimeout> | null = null;
  #stopped = false;

  constructor(readonly opts: DnsFallbackOptions) {}

  /** The control link came up (the controller's snapshots rule) or went down (DNS after a grace period). */
  controllerUp(up: boolean): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    if (!up && !this.#stopped) this.#timer = setTimeout(() => void this.#refresh(), GRACE_MS);
  }

  async #refresh(): Promise<void> {
    for (const { app, table } of this.opts.tables()) {
      let changed = false;
      const deployments: RoutingTable["deployments"] = {};
      for (const [name, route] of Object.entries(table.deployments)) {
        const ips = await tasksOf(this.opts.nameOf(app, name));
        const now = route.replicas.map((r) => r.socket).sort();
        const found = ips.map((ip) => tcpAddress(ip, this.opts.port));
        if (found.length === 0 || found.join() === now.join()) {
          deployments[name] = route;
          continue;
        }
        changed = true;
        deployments[name] = { ...route, replicas: found.map((socket) => ({ id: `${name}@${socket}`, socket })) };
      }
      if (changed) this.opts.put(app, { version: table.version + 1, deployments });
    }
    if (!this.#stopped && this.#timer !== null) this.#timer = setTimeout(() => void this.#refresh(), EVERY_MS);
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
  }
}
