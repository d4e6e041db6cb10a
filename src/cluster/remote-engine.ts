/**
 * The engine for replicas that something else runs (SPEC §9): Docker Swarm
 * tasks, Kubernetes pods, or processes started by hand ("static"). The controller's state
 * machine is unchanged: its `start` becomes a *claim* on a replica of that
 * deployment that dialled in; its `kill` releases the claim. A `Scaler` (the
 * Swarm service's or Kubernetes Deployment's replica count) is told how many replicas each deployment
 * wants; without one, the claims wait for replicas started by hand.
 *
 * A replica that already runs when it meets this controller (the controller
 * restarted) says so in its hello, and a claim adopts it: the replica checks
 * the graph hash, catches up on userConfig and answers `ready` at once.
 */
import type { Connection } from "../runtime/channel/connection.ts";
import type { ControlFromReplica, ControlToReplica, ReplicaSpec } from "../runtime/channel/messages.ts";
import { listenLink, parseAddress, tcpAddress, type LinkListener, type LinkOptions } from "../runtime/channel/transport.ts";
import type { Engine, ExitInfo, ReplicaEvents, ReplicaProcess } from "../runtime/control/engine.ts";
import { PING_EVERY_MS, SILENT_LINK_MS, sendLink, type LinkMessage, type ProxySnapshot, type RunningReplica } from "./control-link.ts";

/**
 * Sets how many replicas a deployment's service runs (Swarm: the service's
 * replica count). `atLeast` only ever raises it: claims come a few at a time
 * (start budget, a restarted controller), and a count set lower on the way
 * would make the engine stop tasks that serve. Only a stop the controller
 * chose lowers it (`exactly`).
 */
export interface Scaler {
  scale(app: string, deployment: string, replicas: number, how: "atLeast" | "exactly"): void;
  /** The controller drains the replica serving at `address`: the count lowered after it exits should take that one (Kubernetes: its pod-deletion-cost). */
  draining?(app: string, deployment: string, address: string): void;
}

/** A replica's control link, as this engine holds it. */
interface Remote {
  conn: Connection;
  /** The replica's process id on its host (for status). */
  pid: number;
  app: string;
  deployment: string;
  running?: RunningReplica;
  /** The code revision its engine runs it as, when the engine has revisions (Kubernetes). */
  revision?: string;
  claim?: Claim;
  /** Told to drain: it exits, and no claim may take it. */
  leaving?: boolean;
}

/** One `start` of the controller: bound to a remote replica once one is free. */
interface Claim {
  key: string;
  spec: ReplicaSpec;
  events: ReplicaEvents;
  remote?: Remote;
  pending: ControlToReplica[];
  ended: boolean;
  resolveExit(info: ExitInfo): void;
}

/** How long a replica told to drain keeps serving first: two of the controller's snapshot periods (250 ms), for the routes without it to reach its callers. */
const ROUTES_SETTLE_MS = 600;

const keyOf = (app: string, deployment: string) => `${app}\u0000${deployment}`;

/** Replicas listen on every interface; callers dial the address the controller saw the replica's link come from. */
function reachable(address: string, seenFrom: string): string {
  const a = parseAddress(address);
  if (a.kind !== "tcp" || (a.host !== "0.0.0.0" && a.host !== "::")) return address;
  return tcpAddress(seenFrom.replace(/^::ffff:/, ""), a.port);
}

export class RemoteEngine implements Engine {
  readonly #listener: LinkListener;
  readonly #remotes = new Set<Remote>();
  readonly #claims: Claim[] = [];
  readonly #proxies = new Set<Connection>();
  readonly #byConn = new Map<Connection, Remote>();
  #snapshot: ProxySnapshot | null = null;
  #detached = false;
  /** When each link last said anything. */
  readonly #heard = new Map<Connection, number>();
  readonly #pinger: ReturnType<typeof setInterval>;

  /** @param listen the control address replicas and proxies dial, e.g. `tcp://0.0.0.0:7070`. */
  constructor(
    listen: string,
    links: LinkOptions,
    readonly scaler?: Scaler,
    /** Whether a replica of this revision may take a claim (Kubernetes: not one whose revision runs other code). Default: every one. */
    readonly eligible: (app: string, deployment: string, revision: string | undefined) => boolean = () => true,
    /** The application a replica's claims come from, by its hello (Kubernetes: a previous revision's pods serve a rollout's previous variant). Default: the one it names. */
    readonly appOf: (app: string, deployment: string, revision: string | undefined) => string = (app) => app,
  ) {
    this.#listener = listenLink(listen, { message: (m, c) => this.#onMessage(c, m as unknown as LinkMessage), close: (c) => this.#onClose(c) }, {}, links);
    this.#pinger = setInterval(() => this.#ping(), PING_EVERY_MS);
  }

  /** Pings every link; one silent too long (its node cut off, its container killed) is dropped as if it closed. */
  #ping(): void {
    const now = performance.now();
    for (const [conn, heard] of this.#heard) {
      if (now - heard < SILENT_LINK_MS) {
        sendLink(conn, { t: "ping" });
        continue;
      }
      conn.socket.terminate();
      this.#onClose(conn, true);
    }
  }

  /** The bound control address (the port, when 0 was asked). */
  get address(): string {
    return this.#listener.address;
  }

  /** Replicas bound to a claim of the controller. */
  get running(): number {
    return this.#claims.filter((c) => c.remote).length;
  }

  /** Replicas connected and not claimed (static mode: started ahead; Swarm: not yet claimed or surplus). */
  get idle(): number {
    return [...this.#remotes].filter((r) => !r.claim && !r.leaving).length;
  }

  /** One deployment's replicas connected and not leaving (`linked`), and of those the unclaimed, which take a claim at once (`idle`). */
  linkedOf(app: string, deployment: string): { linked: number; idle: number } {
    const mine = [...this.#remotes].filter((r) => !r.leaving && r.app === app && r.deployment === deployment);
    return { linked: mine.length, idle: mine.filter((r) => !r.claim && this.#eligible(r)).length };
  }

  #eligible(r: Remote): boolean {
    return this.eligible(r.app, r.deployment, r.revision);
  }

  /** Proxies connected now. */
  get proxies(): number {
    return this.#proxies.size;
  }

  start(spec: ReplicaSpec, _env: Record<string, string>, events: ReplicaEvents): ReplicaProcess {
    let resolveExit!: (info: ExitInfo) => void;
    const exited = new Promise<ExitInfo>((r) => (resolveExit = r));
    const claim: Claim = { key: keyOf(spec.app, spec.deployment), spec, events, pending: [], ended: false, resolveExit };
    this.#claims.push(claim);
    const free = [...this.#remotes].find((r) => !r.claim && !r.leaving && keyOf(r.app, r.deployment) === claim.key && this.#eligible(r));
    if (free) this.#bind(claim, free);
    this.#rescale(claim.key, spec.app, spec.deployment, "atLeast");
    return {
      get pid() {
        return claim.remote?.pid ?? 0;
      },
      send: (msg) => {
        if (claim.ended) return;
        // Detached, nothing reaches a replica; asked to drain, the claim simply ends.
        if (this.#detached) return void (msg.t === "drain" && this.#end(claim, { code: 0, signal: null }));
        if (msg.t === "drain" && claim.remote) {
          const remote = claim.remote;
          this.#leave(remote);
          // Its callers (proxies, other replicas) route by the controller's snapshots: it drains once the ones without it went out,
          // so no call is sent to it after it drained and exited (until then it serves as before).
          setTimeout(() => this.#byConn.get(remote.conn) === remote && sendLink(remote.conn, { t: "to-replica", m: msg }), ROUTES_SETTLE_MS);
          return;
        }
        if (claim.remote) sendLink(claim.remote.conn, { t: "to-replica", m: msg });
        else claim.pending.push(msg);
      },
      kill: () => {
        if (this.#detached) return this.#end(claim, { code: 0, signal: null });
        // The replica process is not ours to signal: asked to leave, it drains and exits, and its engine does not bring it back.
        if (claim.remote) {
          this.#leave(claim.remote);
          sendLink(claim.remote.conn, { t: "to-replica", m: { t: "drain", timeoutS: 0 } });
        }
        const unbound = !claim.remote && !claim.ended;
        this.#end(claim, { code: null, signal: "SIGKILL" });
        // A claim still waiting for its replica: the count asked for it goes too (else its engine keeps starting a pod nobody claims,
        // and a Kubernetes rollout that reads the Deployment's count waits for it forever).
        if (unbound) this.#rescale(claim.key, claim.spec.app, claim.spec.deployment, "exactly");
      },
      exited,
    };
  }

  /**
   * The engine says the replica serving at `address` is gone (Kubernetes took
   * its endpoint out): its link is dropped now, not after SILENT_LINK_MS, so
   * its routes go and its claim starts again. A replica told to drain is left
   * to finish.
   */
  lost(address: string): void {
    for (const r of [...this.#remotes]) {
      if (!r.running || !r.claim || r.leaving || reachable(r.running.address, r.conn.socket.remoteAddress) !== address) continue;
      r.conn.socket.terminate();
      this.#onClose(r.conn);
    }
  }

  /** Pushes proxies' routing snapshot (and to every proxy that connects later). */
  publish(snapshot: ProxySnapshot): void {
    this.#snapshot = snapshot;
    for (const p of this.#proxies) sendLink(p, { t: "snapshot", snapshot });
  }

  /**
   * The controller is going away but its replicas are not: links close
   * without a word, every claim reads as ended, and the replicas keep serving
   * until a controller adopts them.
   */
  detach(): void {
    this.#detached = true;
    clearInterval(this.#pinger);
    this.#listener.stop();
    for (const c of [...this.#claims]) this.#end(c, { code: 0, signal: null });
    for (const r of this.#remotes) r.conn.socket.end();
    for (const p of this.#proxies) p.socket.end();
  }

  /** A replica the controller drains: no claim takes it again, and its engine hears which one goes. */
  #leave(remote: Remote): void {
    if (remote.leaving) return;
    remote.leaving = true;
    if (remote.running) this.scaler?.draining?.(remote.app, remote.deployment, remote.running.address);
  }

  #bind(claim: Claim, remote: Remote): void {
    claim.remote = remote;
    remote.claim = claim;
    sendLink(remote.conn, { t: "to-replica", m: { t: "start", spec: claim.spec } });
    for (const m of claim.pending.splice(0)) sendLink(remote.conn, { t: "to-replica", m });
  }

  #end(claim: Claim, info: ExitInfo): void {
    if (claim.ended) return;
    claim.ended = true;
    const i = this.#claims.indexOf(claim);
    if (i >= 0) this.#claims.splice(i, 1);
    if (claim.remote) claim.remote.claim = undefined;
    claim.resolveExit(info);
    claim.events.exit(info);
    // A drained replica exits and its link closes: the stop the controller chose, so the count follows it down.
    if (claim.remote?.leaving) this.#rescale(claim.key, claim.spec.app, claim.spec.deployment, "exactly");
  }

  #rescale(key: string, app: string, deployment: string, how: "atLeast" | "exactly"): void {
    if (this.#detached) return;
    this.scaler?.scale(app, deployment, this.#claims.filter((c) => c.key === key).length, how);
  }

  #onMessage(conn: Connection, msg: LinkMessage): void {
    if (this.#detached) return;
    this.#heard.set(conn, performance.now());
    switch (msg.t) {
      case "hello":
        if (msg.role === "proxy") {
          this.#proxies.add(conn);
          if (this.#snapshot) sendLink(conn, { t: "snapshot", snapshot: this.#snapshot });
          return;
        }
        return this.#arrived({ conn, pid: msg.pid, app: this.appOf(msg.app, msg.deployment, msg.revision), deployment: msg.deployment, running: msg.running, revision: msg.revision });
      case "from-replica": {
        const remote = this.#byConn.get(conn);
        const claim = remote?.claim;
        if (!remote || !claim) return;
        const m: ControlFromReplica = msg.m.t === "ready" ? { t: "ready", socket: reachable(msg.m.socket, conn.socket.remoteAddress) } : msg.m;
        if (m.t === "ready") remote.running = { replicaId: claim.spec.replicaId, hash: claim.spec.hash, address: m.socket };
        return claim.events.message(m);
      }
      case "leaving": {
        // SIGTERM from its engine: out of the routes now; the claim starts again elsewhere.
        const remote = this.#byConn.get(conn);
        if (!remote) return;
        if (remote.claim) this.#end(remote.claim, { code: 0, signal: "SIGTERM", evicted: true });
        // Draining now: no claim may take it again (marked after the end: its engine chose this stop, so no count is lowered for it).
        remote.leaving = true;
        return;
      }
    }
  }

  #arrived(remote: Remote): void {
    this.#remotes.add(remote);
    this.#byConn.set(remote.conn, remote);
    const key = keyOf(remote.app, remote.deployment);
    const waiting = this.#claims.find((c) => c.key === key && !c.remote && !c.ended);
    if (waiting && this.#eligible(remote)) this.#bind(waiting, remote);
  }

  #onClose(conn: Connection, silent = false): void {
    this.#heard.delete(conn);
    this.#proxies.delete(conn);
    const remote = this.#byConn.get(conn);
    if (!remote) return;
    this.#byConn.delete(conn);
    this.#remotes.delete(remote);
    if (remote.claim) this.#end(remote.claim, { code: null, signal: "SIGKILL", ...(silent && { silent }) });
  }

  stop(): void {
    this.detach();
  }
}
