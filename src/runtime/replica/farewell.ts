/**
 * How a draining replica leaves without losing a call (SPEC §5). Its callers
 * (proxies, the main process, other replicas) route by snapshots that drop it
 * only a little after it began draining, so a call can still be on its way
 * when it has finished everything it took — and a call that reaches a process
 * that already exited is lost, looking to its caller as if it might have run.
 *
 * So once it drained, the replica says so on every data connection
 * (`{ t: "drained" }`, the last message there): every call it admitted on
 * that connection was answered before it, so whatever the caller still waits
 * for never ran, and goes to another replica. It then exits once its callers
 * have hung up (they do on reading it), or at the drain's deadline. A call
 * read meanwhile is answered "busy", as while draining.
 */
import type { Connection } from "../channel/connection.ts";

/** A drain's deadline, which a later drain with a shorter timeout brings forward (a kill after the grace period). */
export class Deadline {
  #at = Infinity;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #reach!: () => void;
  /** Resolves when the deadline passes. */
  readonly reached = new Promise<void>((r) => (this.#reach = r));

  /** No later than `ms` from now. */
  within(ms: number): void {
    const at = performance.now() + ms;
    if (at >= this.#at) return;
    this.#at = at;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(this.#reach, Math.max(0, ms));
  }
}

/** The replica's inbound data connections, and its last word on each. */
export class Farewell {
  readonly #conns = new Set<Connection>();
  #said = false;
  #allClosed: (() => void) | null = null;

  /** @param idle whether no call a caller still waits for runs on `conn` (a drain that timed out leaves some running). */
  constructor(readonly idle: (conn: Connection) => boolean) {}

  /** A caller connected (one that connects after the farewell hears it at once). */
  opened(conn: Connection): void {
    this.#conns.add(conn);
    if (this.#said) this.#say(conn);
  }

  /** A caller hung up. */
  closed(conn: Connection): void {
    this.#conns.delete(conn);
    if (this.#conns.size === 0) this.#allClosed?.();
  }

  /**
   * After the drain: tells every caller, then resolves once all have hung up
   * or `deadline` passed. A connection with a call still running (the drain
   * timed out) is told nothing: its caller learns of the loss when it closes.
   */
  async leave(deadline: Deadline): Promise<void> {
    this.#said = true;
    for (const c of this.#conns) this.#say(c);
    if (this.#conns.size === 0) return;
    await Promise.race([new Promise<void>((r) => (this.#allClosed = r)), deadline.reached]);
  }

  #say(conn: Connection): void {
    if (this.idle(conn)) conn.send({ t: "drained", id: 0 });
  }
}
