import type { ProxyListener } from "./proxy.ts";
import { CLOSE_GRACE_MS, closingFetch } from "./closing-fetch.ts";

type BunServer = ReturnType<typeof Bun.serve>;

/**
 * The main process's own data-plane listener. With proxy.location "main"
 * it is the only one. With "ingress" it shares the port (SO_REUSEPORT) with
 * the ingress replicas' listeners: it serves until the first of them opens,
 * then stops taking connections, and opens again whenever none is left (all
 * ingress replicas dead or stopped), so the port never refuses connections.
 *
 * Linux drops the connections still queued in a closing SO_REUSEPORT
 * listener's accept backlog unless net.ipv4.tcp_migrate_req is 1: a client
 * that opens a connection per request can see a reset at the moment of a
 * hand-over; keep-alive clients do not (measured, see the README).
 */
export class MainListener {
  readonly port: number;
  #http: BunServer | null;
  #stopped = false;

  constructor(
    readonly host: string,
    port: number,
    readonly proxy: ProxyListener,
    /** Whether ingress replicas share the port. */
    readonly shared: boolean,
  ) {
    if (shared) {
      // Bound once without SO_REUSEPORT first: a port another program holds is refused here, as it would be
      // without sharing, and port 0 becomes the concrete port every listener binds.
      const probe = Bun.serve({ hostname: host, port, fetch: () => new Response(null, { status: 503 }) });
      port = probe.port!;
      void probe.stop(true);
    }
    this.#http = this.#open(port);
    this.port = this.#http.port!;
  }

  #open(port: number): BunServer {
    if (!this.shared) return Bun.serve({ hostname: this.host, port, ...this.proxy });
    const http: BunServer = Bun.serve({ hostname: this.host, port, reusePort: true, ...this.proxy, fetch: closingFetch(this.proxy.fetch, (): boolean => this.#closing.has(http)) });
    return http;
  }

  /** Listeners in their last moments (CLOSE_GRACE_MS), answering with `Connection: close`. */
  readonly #closing = new Set<BunServer>();

  /** Step-asides under way: each resolves once that listener is closed and its requests answered. */
  readonly #steppingAside = new Set<Promise<void>>();

  /** Steps aside: marks answers `Connection: close` for a moment, then stops taking connections. */
  #stepAside(http: BunServer): void {
    this.#closing.add(http);
    const done: Promise<void> = Bun.sleep(CLOSE_GRACE_MS)
      .then(() => {
        this.#closing.delete(http);
        return http.stop(false);
      })
      .finally(() => this.#steppingAside.delete(done));
    this.#steppingAside.add(done);
  }

  /** Resolves once no hand-over to the ingress listeners is under way (the server reports ready only then). */
  async settled(): Promise<void> {
    await Promise.all(this.#steppingAside);
  }

  /** The number of ingress replicas listening changed: step aside for them, or take over when none is left. */
  ingressListeners(n: number): void {
    if (this.#stopped || !this.shared) return;
    if (n > 0 && this.#http) {
      this.#stepAside(this.#http);
      this.#http = null;
    } else if (n === 0 && !this.#http) {
      this.#http = this.#open(this.port);
    }
  }

  /** Stops taking connections for good; resolves when the requests it holds are answered. */
  async stop(): Promise<void> {
    this.#stopped = true;
    const http = this.#http;
    this.#http = null;
    await http?.stop(false);
  }
}
