/**
 * Where a Connection's bytes travel, chosen by the peer's address: a unix
 * socket path (peers on this host; large values through shared memory), or
 * `tcp://host:port` (peers anywhere; TCP_NODELAY, the cluster-token handshake
 * of link-auth.ts before any frame, large values in chunks through the
 * connection itself). The framing, the codec and every message are the same
 * on both, so forwarding and streaming credits work unchanged.
 *
 * @example
 *   const l = listenLink("tcp://127.0.0.1:0", handlers, shm, { token });   // l.address: "tcp://127.0.0.1:40123"
 *   const conn = await dialLink(l.address, handlers, shm, { token });
 */
import { chmodSync, rmSync } from "node:fs";
import type { Socket } from "bun";
import type { ClusterToken } from "../../config/cluster-token.ts";
import { ServeError } from "../../error.ts";
import { Connection, socketHandlers, type BinaryChannel, type ConnectionHandlers } from "./connection.ts";
import { InlineChunks } from "./inline-chunks.ts";
import { countDialRefused, countRefused, DialerHandshake, HANDSHAKE_TIMEOUT_MS, ListenerHandshake, linkStats, type RefusalReason, type Step } from "./link-auth.ts";

/** What every link of this process needs besides the address. */
export interface LinkOptions {
  /** The cluster token; without it this process neither dials nor accepts TCP links. */
  token?: ClusterToken;
}

/** A parsed peer address. */
export type LinkAddress = { kind: "unix"; path: string } | { kind: "tcp"; host: string; port: number };

const TCP = /^tcp:\/\/(\[[0-9a-fA-F:.]+\]|[^\s:/[\]]+):(\d{1,5})$/;

/**
 * Reads an address: `tcp://host:port` (IPv6 in brackets) or an absolute unix socket path.
 * @example parseAddress("tcp://10.0.1.7:7000") // { kind: "tcp", host: "10.0.1.7", port: 7000 }
 */
export function parseAddress(address: string): LinkAddress {
  if (address.startsWith("/")) return { kind: "unix", path: address };
  const m = TCP.exec(address);
  const port = m ? Number(m[2]) : -1;
  if (!m || port > 65535) {
    throw new ServeError("invalid", `"${address}" is not a link address: use tcp://host:port (port 0-65535, IPv6 hosts in brackets) or an absolute unix socket path`);
  }
  return { kind: "tcp", host: m[1]!.replace(/^\[|\]$/g, ""), port };
}

/** `tcp://host:port`, with an IPv6 host in brackets. */
export function tcpAddress(host: string, port: number): string {
  return `tcp://${host.includes(":") ? `[${host}]` : host}:${port}`;
}

function needToken(address: string, opts: LinkOptions, doing: string): ClusterToken {
  if (opts.token) return opts.token;
  throw new ServeError("unavailable", `cannot ${doing} ${address}: TCP links need the cluster token; set SERVE_BIN_CLUSTER_TOKEN or SERVE_BIN_CLUSTER_TOKEN_FILE in this process's environment`);
}

/**
 * Socket data until the handshake ends: it has the Connection's socket-facing
 * methods, so the usual socketHandlers drive it; once authenticated it puts
 * the Connection in its place.
 */
class Handshaking {
  #done = false;
  readonly #timer: ReturnType<typeof setTimeout>;

  constructor(
    readonly socket: Socket<Connection>,
    readonly hs: { push(chunk: Uint8Array): Step },
    readonly open: (conn: Connection) => void,
    readonly fail: (reason: RefusalReason, message: string) => void,
    readonly handlers: ConnectionHandlers,
  ) {
    this.#timer = setTimeout(() => this.#fail("timeout", `the peer did not finish the link handshake within ${HANDSHAKE_TIMEOUT_MS} ms`), HANDSHAKE_TIMEOUT_MS);
  }

  onData(chunk: Uint8Array): void {
    if (this.#done) return;
    const step = this.hs.push(chunk);
    if (step.t === "fail") return this.#fail(step.reason, step.message);
    if (step.send) this.socket.write(step.send);
    if (step.t !== "done") return;
    this.#done = true;
    clearTimeout(this.#timer);
    const conn = new Connection(this.socket, this.handlers, new InlineChunks());
    this.socket.data = conn;
    this.open(conn);
    this.handlers.open?.(conn);
    if (step.rest.byteLength) conn.onData(step.rest);
  }

  #fail(reason: RefusalReason, message: string): void {
    if (this.#done) return;
    this.#done = true;
    clearTimeout(this.#timer);
    this.socket.end();
    this.fail(reason, message);
  }

  onDrain(): void {}

  onClose(): void {
    this.#fail("closed", "the peer closed the link during the handshake (a wrong cluster token closes it)");
  }
}

/** A unix socket's handlers: a Connection from the first byte, with shared memory when the process has it. */
function unixSocket(handlers: ConnectionHandlers, binary: BinaryChannel) {
  return {
    ...socketHandlers,
    open(socket: Socket<Connection>) {
      socket.data = new Connection(socket, handlers, binary);
      handlers.open?.(socket.data);
    },
  };
}

/** A TCP socket's handlers: no Nagle delay (messages are small and latency-bound), and the handshake first. */
function tcpSocket(start: (socket: Socket<Connection>) => Handshaking) {
  return {
    ...socketHandlers,
    open(socket: Socket<Connection>) {
      socket.setNoDelay(true);
      socket.data = start(socket) as unknown as Connection;
    },
  };
}

/**
 * A TCP dial not open (handshake included) after this long is given up. Left to
 * the kernel, a SYN to an address that is gone or not yet routed (a restarted
 * controller's old task; a new replica's task that the Swarm overlay has not
 * learnt yet) is resent with a doubling back-off for about two minutes, and
 * every call queued on that link waits as long: on a three-node Swarm, replicas
 * took 60–120 s to find a controller that had been back for a minute, and a
 * scale-up under load had all 8 requests in flight time out after 30 s. Given
 * up, the calls that never left go to another replica (router.ts).
 */
export const DIAL_TIMEOUT_MS = 5_000;

/**
 * Connects to `address` and resolves with an open Connection (for TCP: once
 * both sides proved the cluster token). Rejects if the peer cannot be reached,
 * the handshake fails, or (TCP) it is not open within DIAL_TIMEOUT_MS; a
 * connection that opens later is closed at once.
 */
export function dialLink(address: string, handlers: ConnectionHandlers, binary: BinaryChannel, opts: LinkOptions): Promise<Connection> {
  const a = parseAddress(address);
  if (a.kind === "unix") {
    return Bun.connect<Connection>({ unix: a.path, socket: unixSocket(handlers, binary) }).then((socket) => socket.data);
  }
  let token: ClusterToken;
  try {
    token = needToken(address, opts, "call");
  } catch (e) {
    return Promise.reject(e);
  }
  return new Promise<Connection>((resolve, reject) => {
    let late = false;
    const timer = setTimeout(() => {
      late = true;
      reject(new ServeError("unavailable", `the link to ${address} did not connect within ${DIAL_TIMEOUT_MS} ms`));
    }, DIAL_TIMEOUT_MS);
    const open = (conn: Connection) => {
      clearTimeout(timer);
      if (late) conn.socket.end();
      else resolve(conn);
    };
    const refused = (message: string) => (clearTimeout(timer), reject(new ServeError("unavailable", `the link to ${address} failed: ${message}`)));
    const fail = (_: unknown, message: string) => (countDialRefused(), refused(message));
    Bun.connect<Connection>({
      hostname: a.host,
      port: a.port,
      socket: {
        ...tcpSocket((socket) => {
          const hs = new DialerHandshake(token);
          socket.write(hs.hello());
          return new Handshaking(socket, hs, open, fail, handlers);
        }),
        connectError: (_socket, e) => refused(e.message),
      },
    }).catch((e: Error) => refused(e.message));
  });
}

/** A listening link endpoint. */
export interface LinkListener {
  /** What peers dial: the unix path, or `tcp://host:port` with the port actually bound. */
  readonly address: string;
  stop(): void;
}

/**
 * Listens on `address` (`tcp://host:0` picks a free port). Each accepted
 * connection — for TCP only after it proved the cluster token — becomes a
 * Connection served by `handlers`. A unix socket is created mode 0600.
 * @throws ServeError("invalid") for a TCP address when `opts.token` is missing.
 */
export function listenLink(address: string, handlers: ConnectionHandlers, binary: BinaryChannel, opts: LinkOptions): LinkListener {
  const a = parseAddress(address);
  if (a.kind === "unix") {
    rmSync(a.path, { force: true });
    const l = Bun.listen<Connection>({ unix: a.path, socket: unixSocket(handlers, binary) });
    chmodSync(a.path, 0o600);
    return { address, stop: () => l.stop(true) };
  }
  let token: ClusterToken;
  try {
    token = needToken(address, opts, "listen on");
  } catch (e) {
    throw new ServeError("invalid", (e as Error).message);
  }
  const l = Bun.listen<Connection>({
    hostname: a.host,
    port: a.port,
    socket: tcpSocket((socket) => {
      const fail = (reason: RefusalReason, message: string) => {
        countRefused(reason);
        // One line per refusal would let anyone who can reach the port fill the log; the counter has them all.
        const n = linkStats().refused;
        if (n <= 10 || n % 1000 === 0) console.error(`serve-bin: refused a link from ${socket.remoteAddress}: ${message} (${n} refused so far)`);
      };
      return new Handshaking(socket, new ListenerHandshake(token), () => {}, fail, handlers);
    }),
  });
  return { address: tcpAddress(a.host, l.port), stop: () => l.stop(true) };
}
