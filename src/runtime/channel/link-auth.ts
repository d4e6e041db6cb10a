/**
 * Mutual authentication of a TCP link with the cluster token, before any
 * frame flows (SPEC §9). Both sides send a fresh random nonce and prove they
 * know the token with an HMAC-SHA256 over both nonces; the token itself never
 * crosses the wire, and a recorded proof is useless on another connection
 * (fresh nonces) or in the other direction (each proof is labelled with its
 * side).
 *
 *   dialer   → listener   HELLO  "SBL1" ‖ Nc                    36 bytes
 *   listener → dialer     "SBL1" ‖ Ns ‖ HMAC(K, "listener" ‖ Nc ‖ Ns)  68 bytes
 *   dialer   → listener   HMAC(K, "dialer" ‖ Nc ‖ Ns)          32 bytes
 *   listener → dialer     0x01 (accepted)                       1 byte
 *
 * Anything else — a wrong magic, a wrong proof, a peer that sends frames
 * first, or silence past the deadline — closes the connection, and the
 * listener counts it in `linkStats().refused`.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import type { ClusterToken } from "../../config/cluster-token.ts";

const MAGIC = new Uint8Array([0x53, 0x42, 0x4c, 0x31]); // "SBL1"
const NONCE = 32;
const MAC = 32;
const HELLO = MAGIC.length + NONCE;
const CHALLENGE = MAGIC.length + NONCE + MAC;
const ACCEPTED = 0x01;
const LISTENER = new TextEncoder().encode("listener");
const DIALER = new TextEncoder().encode("dialer");

/** How long a peer has to finish the handshake. */
export const HANDSHAKE_TIMEOUT_MS = 5_000;

/** Why a link was refused. */
export type RefusalReason = "bad-hello" | "bad-proof" | "timeout" | "closed";

/** Counters of this process's TCP links, for /metrics. */
export interface LinkStats {
  /** Incoming links that proved the token. */
  accepted: number;
  /** Incoming links closed because they did not (any reason). */
  refused: number;
  /** The same, by reason. */
  refusedBy: Record<RefusalReason, number>;
  /** Outgoing links that failed the handshake (the peer did not prove the token, or refused ours). */
  dialRefused: number;
}

const stats: LinkStats = { accepted: 0, refused: 0, refusedBy: { "bad-hello": 0, "bad-proof": 0, timeout: 0, closed: 0 }, dialRefused: 0 };

/**
 * This process's TCP link counters.
 * @example linkStats() // { accepted: 3, refused: 1, refusedBy: { "bad-proof": 1, ... }, dialRefused: 0 }
 */
export function linkStats(): LinkStats {
  return { ...stats, refusedBy: { ...stats.refusedBy } };
}

function proof(token: ClusterToken, label: Uint8Array, nc: Uint8Array, ns: Uint8Array): Uint8Array {
  return createHmac("sha256", token.bytes).update(label).update(nc).update(ns).digest();
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && timingSafeEqual(a, b);
}

function startsWithMagic(b: Uint8Array): boolean {
  return b[0] === MAGIC[0] && b[1] === MAGIC[1] && b[2] === MAGIC[2] && b[3] === MAGIC[3];
}

/** What a handshake step produced: bytes to send, and whether it is over. */
export type Step =
  | { t: "more"; send?: Uint8Array }
  /** Authenticated: `rest` are bytes that arrived after the handshake (the first frames). */
  | { t: "done"; send?: Uint8Array; rest: Uint8Array }
  | { t: "fail"; reason: RefusalReason; message: string };

/** Collects bytes until `n` are there; returns them and what followed, or null. */
class Gather {
  #buf = new Uint8Array(0);
  push(chunk: Uint8Array): void {
    const next = new Uint8Array(this.#buf.byteLength + chunk.byteLength);
    next.set(this.#buf);
    next.set(chunk, this.#buf.byteLength);
    this.#buf = next;
  }
  get bytes(): Uint8Array {
    return this.#buf;
  }
  take(n: number): [Uint8Array, Uint8Array] | null {
    if (this.#buf.byteLength < n) return null;
    const out: [Uint8Array, Uint8Array] = [this.#buf.subarray(0, n), this.#buf.subarray(n)];
    this.#buf = new Uint8Array(0);
    return out;
  }
}

/** The listener's side: waits for HELLO, answers the challenge, checks the dialer's proof. */
export class ListenerHandshake {
  readonly #in = new Gather();
  readonly #ns = crypto.getRandomValues(new Uint8Array(NONCE));
  #nc: Uint8Array | null = null;

  constructor(readonly token: ClusterToken) {}

  push(chunk: Uint8Array): Step {
    this.#in.push(chunk);
    if (!this.#nc) {
      if (this.#in.bytes.byteLength >= MAGIC.length && !startsWithMagic(this.#in.bytes)) return refuse("bad-hello", "the peer did not open with a serve-bin link hello");
      const got = this.#in.take(HELLO);
      if (!got) return { t: "more" };
      this.#nc = got[0].slice(MAGIC.length);
      const out = new Uint8Array(CHALLENGE);
      out.set(MAGIC);
      out.set(this.#ns, MAGIC.length);
      out.set(proof(this.token, LISTENER, this.#nc, this.#ns), MAGIC.length + NONCE);
      if (got[1].byteLength) this.#in.push(got[1]);
      return this.#afterChallenge(out);
    }
    return this.#afterChallenge(undefined);
  }

  #afterChallenge(send: Uint8Array | undefined): Step {
    const got = this.#in.take(MAC);
    if (!got) return { t: "more", send };
    // A dialer waits for ACCEPTED before it sends frames: bytes beyond its proof are a protocol error.
    if (got[1].byteLength) return refuse("bad-hello", "the peer sent data before the handshake ended");
    if (!same(got[0], proof(this.token, DIALER, this.#nc!, this.#ns))) return refuse("bad-proof", "the peer's proof does not match this cluster's token");
    stats.accepted++;
    const ok = new Uint8Array([ACCEPTED]);
    return { t: "done", send: send ? concat2(send, ok) : ok, rest: new Uint8Array(0) };
  }
}

function refuse(reason: RefusalReason, message: string): Step {
  return { t: "fail", reason, message };
}

/** Counts a refused incoming link (the caller closes it). */
export function countRefused(reason: RefusalReason): void {
  stats.refused++;
  stats.refusedBy[reason]++;
}

/** Counts an outgoing link whose handshake failed. */
export function countDialRefused(): void {
  stats.dialRefused++;
}

/** The dialer's side: sends HELLO, checks the listener's proof, sends its own, waits for ACCEPTED. */
export class DialerHandshake {
  readonly #in = new Gather();
  readonly #nc = crypto.getRandomValues(new Uint8Array(NONCE));
  #proved = false;

  constructor(readonly token: ClusterToken) {}

  /** The first bytes to send. */
  hello(): Uint8Array {
    return concat2(MAGIC, this.#nc);
  }

  push(chunk: Uint8Array): Step {
    this.#in.push(chunk);
    if (!this.#proved) {
      const got = this.#in.take(CHALLENGE);
      if (!got) return { t: "more" };
      const c = got[0];
      if (!startsWithMagic(c)) return refuse("bad-hello", "the peer is not a serve-bin link listener");
      const ns = c.slice(MAGIC.length, MAGIC.length + NONCE);
      if (!same(c.subarray(MAGIC.length + NONCE), proof(this.token, LISTENER, this.#nc, ns))) {
        return refuse("bad-proof", "the peer does not know this cluster's token");
      }
      this.#proved = true;
      if (got[1].byteLength) this.#in.push(got[1]);
      const send = proof(this.token, DIALER, this.#nc, ns);
      const step = this.#accepted();
      return step.t === "more" ? { t: "more", send } : step.t === "done" ? { ...step, send } : step;
    }
    return this.#accepted();
  }

  #accepted(): Step {
    const got = this.#in.take(1);
    if (!got) return { t: "more" };
    if (got[0][0] !== ACCEPTED) return refuse("bad-proof", "the peer refused this process's cluster token");
    return { t: "done", rest: got[1] };
  }
}

function concat2(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a);
  out.set(b, a.byteLength);
  return out;
}
