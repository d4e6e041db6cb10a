import { ServeError } from "../error.ts";
import type { Deadline, Deadlines } from "./deadlines.ts";

/** Limits on reading one request body, and the names of the settings that raise them (for the messages). */
export interface BodyLimits {
  maxBytes: number;
  timeoutS: number;
  /** e.g. "proxy.maxBodyBytes" */
  maxSetting: string;
  /** e.g. "proxy.bodyTimeoutS" */
  timeoutSetting: string;
  /** A listener's shared deadline queue of `timeoutS` (a timer per body otherwise). */
  deadlines?: Deadlines;
}

/**
 * Reads a request body whole, within `limits.timeoutS` and `limits.maxBytes`.
 * A client that trickles its body (one byte a second) would otherwise hold
 * its connection, and a descriptor, for as long as it likes: past the
 * deadline this throws `request_timeout` (408). A body over the size throws
 * `payload_too_large` (413) as soon as the bytes read pass it, chunked or not.
 *
 * @example const body = await readBody(req, { maxBytes: 1 << 20, timeoutS: 30, maxSetting: "proxy.maxBodyBytes", timeoutSetting: "proxy.bodyTimeoutS" });
 */
export function readBody(req: Request, limits: BodyLimits): Promise<Uint8Array> {
  const declared = req.headers.get("content-length");
  if (declared !== null && Number(declared) > limits.maxBytes) return Promise.reject(tooLarge(limits));
  // A length-delimited body cannot run past its declared length: the fast path reads it at once.
  const read = declared !== null ? req.bytes() : readCounted(req, limits);
  // One promise settled by whichever comes first; after a timeout the read fails when the connection closes, handled here too.
  const body = new BodyRead(limits);
  body.deadline = limits.deadlines ? limits.deadlines.add(body) : timerDeadline(body, limits.timeoutS);
  read.then(
    (b) => body.done(b),
    (e) => body.failed(e),
  );
  return body.promise;
}

/** One body being read: settled by its bytes, its error, or its deadline (Deadlines calls `expire`). */
class BodyRead {
  readonly promise: Promise<Uint8Array>;
  #resolve!: (b: Uint8Array) => void;
  #reject!: (e: unknown) => void;
  deadline: Deadline | null = null;

  constructor(readonly limits: BodyLimits) {
    // withResolvers: no executor closure, and no scope for it, per request.
    const { promise, resolve, reject } = Promise.withResolvers<Uint8Array>();
    this.promise = promise;
    this.#resolve = resolve;
    this.#reject = reject;
  }

  done(b: Uint8Array): void {
    this.deadline?.cancel();
    this.#resolve(b);
  }

  failed(e: unknown): void {
    this.deadline?.cancel();
    this.#reject(e);
  }

  expire(): void {
    const { timeoutSetting, timeoutS } = this.limits;
    this.#reject(new ServeError("request_timeout", `the request body did not arrive within ${timeoutSetting} (${timeoutS} s); send it faster or raise the limit`));
  }
}

/** A deadline on its own timer, for a reader without a listener's shared queue. */
function timerDeadline(body: BodyRead, timeoutS: number): Deadline {
  const timer = setTimeout(() => body.expire(), timeoutS * 1000);
  return { cancel: () => clearTimeout(timer) };
}

async function readCounted(req: Request, limits: BodyLimits): Promise<Uint8Array> {
  if (!req.body) return new Uint8Array(0);
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limits.maxBytes) {
      void reader.cancel().catch(() => {});
      throw tooLarge(limits);
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return chunks[0]!;
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) out.set(c, (at += c.byteLength) - c.byteLength);
  return out;
}

function tooLarge(limits: BodyLimits): ServeError {
  return new ServeError("payload_too_large", `the request body is larger than ${limits.maxSetting} (${limits.maxBytes} bytes); send less or raise the limit`);
}

/**
 * Headers of an answer sent before the body was read whole: the connection
 * is closed after it, so the rest of a slow or oversized body is never read.
 */
export function closing(res: Response): Response {
  res.headers.set("connection", "close");
  return res;
}
