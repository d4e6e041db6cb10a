/**
 * The control link between the cluster roles (SPEC §9): replicas and proxies
 * dial the controller over an authenticated TCP link (transport.ts) and keep
 * dialling while it is away. The messages ride the same framing and codec as
 * calls; these are their shapes.
 */
import type { Connection } from "../runtime/channel/connection.ts";
import type { ControlFromReplica, ControlToReplica, DataMessage, ProxySnapshot } from "../runtime/channel/messages.ts";
import { Resolver } from "node:dns/promises";
import { isIP } from "node:net";
import { dialLink, parseAddress, tcpAddress, type LinkOptions } from "../runtime/channel/transport.ts";

/** What a replica that already runs tells a controller it meets (a restarted one adopts it). */
export interface RunningReplica {
  replicaId: string;
  hash: string;
  address: string;
}

export type { ProxyApp, ProxySnapshot } from "../runtime/channel/messages.ts";

/** Messages on a control link. */
export type LinkMessage =
  | { t: "hello"; role: "replica"; app: string; deployment: string; pid: number; running?: RunningReplica; /** The code revision its engine runs it as (Kubernetes: the pod's revision label). */ revision?: string }
  | { t: "hello"; role: "proxy" }
  | { t: "to-replica"; m: ControlToReplica }
  | { t: "from-replica"; m: ControlFromReplica }
  | { t: "leaving" }
  /** Both ends, every second: a peer whose host vanished sends no FIN, so silence is what ends its link. */
  | { t: "ping" }
  | { t: "snapshot"; snapshot: ProxySnapshot };

/** Sends a control message (the connection's codec carries any plain value). */
export function sendLink(conn: Connection, msg: LinkMessage): void {
  conn.send(msg as unknown as DataMessage);
}

/**
 * The controller's address with its name resolved afresh: a restarted
 * controller is a new task with a new address under the same name, and both
 * the runtime's lookup cache and a resolver's answer cache (Swarm's DNS says
 * TTL 600) would keep dialling the dead one. A new Resolver starts with an
 * empty cache. A name DNS does not know (e.g. from /etc/hosts) is dialled as it is.
 */
async function fresh(address: string): Promise<string> {
  const a = parseAddress(address);
  if (a.kind !== "tcp" || isIP(a.host)) return address;
  try {
    const ips = await new Resolver().resolve4(a.host);
    return ips.length ? tcpAddress(ips[Math.floor(Math.random() * ips.length)]!, a.port) : address;
  } catch {
    return address;
  }
}

/** Longest wait between two dials to an absent controller. */
const MAX_REDIAL_MS = 2000;
/** How often each end of a control link pings, and how long a silent link lives. */
export const PING_EVERY_MS = 1000;
export const SILENT_LINK_MS = 5000;
/** A dial not connected after this long is given up (transport.ts) and made again, with the name resolved afresh. */
export { DIAL_TIMEOUT_MS } from "../runtime/channel/transport.ts";

/**
 * Keeps one control link to the controller: dials, says hello, hands each
 * message on, and dials again (backing off to 2 s) whenever it drops — the
 * process keeps serving meanwhile. `stop()` ends it.
 */
export class ControllerLink {
  #conn: Connection | null = null;
  #stopped = false;
  #delay = 100;
  #lastFailure = "";
  #heard = 0;
  readonly #pinger: ReturnType<typeof setInterval>;

  constructor(
    readonly address: string,
    readonly links: LinkOptions,
    readonly hello: () => LinkMessage,
    readonly onMessage: (msg: LinkMessage) => void,
    readonly onState: (connected: boolean) => void = () => {},
    /** Why a dial failed, once per distinct reason (a wrong token, no route, refused). */
    readonly onFail: (message: string) => void = () => {},
  ) {
    this.#pinger = setInterval(() => this.#ping(), PING_EVERY_MS);
    void this.#dial();
  }

  /** Pings the controller, and drops a link that stayed silent (its host gone, or cut off): then dials again. */
  #ping(): void {
    const conn = this.#conn;
    if (!conn) return;
    if (performance.now() - this.#heard < SILENT_LINK_MS) return sendLink(conn, { t: "ping" });
    this.#conn = null;
    conn.socket.terminate();
    this.onState(false);
    if (!this.#stopped) void this.#dial();
  }

  get connected(): boolean {
    return this.#conn !== null;
  }

  send(msg: LinkMessage): void {
    if (this.#conn) sendLink(this.#conn, msg);
  }

  async #dial(): Promise<void> {
    while (!this.#stopped) {
      try {
        const address = await fresh(this.address);
        const dialing = dialLink(
          address,
          {
            message: (m) => {
              this.#heard = performance.now();
              if ((m as unknown as LinkMessage).t !== "ping") this.onMessage(m as unknown as LinkMessage);
            },
            close: () => {
              if (this.#conn !== conn) return;
              this.#conn = null;
              this.onState(false);
              if (!this.#stopped) void this.#dial();
            },
          },
          {},
          this.links,
        );
        const conn = await dialing;
        if (this.#stopped) return void conn.socket.end();
        this.#conn = conn;
        this.#heard = performance.now();
        this.#delay = 100;
        this.#lastFailure = "";
        sendLink(conn, this.hello());
        this.onState(true);
        return;
      } catch (e) {
        const why = (e as Error).message;
        if (why !== this.#lastFailure) this.onFail(why);
        this.#lastFailure = why;
        await Bun.sleep(this.#delay);
        this.#delay = Math.min(MAX_REDIAL_MS, this.#delay * 2);
      }
    }
  }

  stop(): void {
    this.#stopped = true;
    clearInterval(this.#pinger);
    this.#conn?.socket.end();
    this.#conn = null;
  }
}
