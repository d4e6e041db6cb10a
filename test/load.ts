/**
 * A steady, bounded load on 127.0.0.1 that counts every response: `loops`
 * concurrent loops, each sending one request at a time (so at most `loops`
 * are in flight), until stopped or for `durationMs`. Every answer is counted by status; a
 * network error or a request past `timeoutMs` counts as failed (status 0).
 *
 * @example
 * const load = startLoad({ url: `${server.url}/m`, body: { x: 1 } });
 * await load.until((s) => s.ok >= 50, "50 answers");
 * const result = await load.stop();
 * expect(result.failed).toBe(0);
 */
import { waitFor } from "./harness.ts";

export interface LoadOptions {
  url: string;
  /** JSON-encoded and POSTed; without one, a GET. */
  body?: unknown;
  /** Concurrent loops (default 4). */
  loops?: number;
  /** Pause after each answer, per loop (default 0): keeps a no-op target from spinning the CPU. */
  pauseMs?: number;
  /** A request still unanswered after this counts as failed (default 30 s). */
  timeoutMs?: number;
  /** Stop sending after this long (default: until `stop()`). */
  durationMs?: number;
}

/** One answer, for tests that look at what was answered and when. */
export interface Answer {
  status: number;
  body: string;
  /** performance.now() when it was sent and when it was answered. */
  sentAt: number;
  doneAt: number;
}

export interface LoadResult {
  ok: number;
  failed: number;
  /** Count per HTTP status; 0 is a network error or a timeout. */
  statuses: Record<number, number>;
  /** The first few failures, to say why in an assertion message. */
  failures: string[];
  /** Every answer, in the order they came back. */
  answers: Answer[];
}

export interface Load {
  /** A snapshot of the counts so far. */
  readonly current: LoadResult;
  /** Resolves once `cond` holds on the counts so far. */
  until(cond: (r: LoadResult) => boolean, what: string, timeoutMs?: number): Promise<LoadResult>;
  /** Stops sending, waits for the requests in flight, returns the counts. */
  stop(): Promise<LoadResult>;
  /** Resolves with the counts once every loop has ended (after `durationMs`, or `stop()`). */
  readonly done: Promise<LoadResult>;
}

export function startLoad(opts: LoadOptions): Load {
  const result: LoadResult = { ok: 0, failed: 0, statuses: {}, failures: [], answers: [] };
  const body = opts.body === undefined ? undefined : JSON.stringify(opts.body);
  let stopping = false;
  const endAt = opts.durationMs === undefined ? Infinity : performance.now() + opts.durationMs;

  const record = (a: Answer, why?: string) => {
    result.answers.push(a);
    result.statuses[a.status] = (result.statuses[a.status] ?? 0) + 1;
    if (a.status === 200) result.ok++;
    else {
      result.failed++;
      if (result.failures.length < 10) result.failures.push(why ?? `${a.status}: ${a.body.slice(0, 300)}`);
    }
  };

  const loop = async () => {
    while (!stopping && performance.now() < endAt) {
      const sentAt = performance.now();
      try {
        const res = await fetch(opts.url, {
          method: body === undefined ? "GET" : "POST",
          body,
          headers: body === undefined ? undefined : { "content-type": "application/json" },
          signal: AbortSignal.timeout(opts.timeoutMs ?? 30_000),
        });
        record({ status: res.status, body: await res.text(), sentAt, doneAt: performance.now() });
      } catch (e) {
        record({ status: 0, body: "", sentAt, doneAt: performance.now() }, `network: ${(e as Error).message}`);
      }
      if (opts.pauseMs) await Bun.sleep(opts.pauseMs);
    }
  };
  const loops = Array.from({ length: opts.loops ?? 4 }, loop);
  const done = Promise.all(loops).then(() => result);

  return {
    get current() {
      return result;
    },
    until: (cond, what, timeoutMs = 20_000) => waitFor(() => (cond(result) ? result : null), what, timeoutMs),
    stop() {
      stopping = true;
      return done;
    },
    done,
  };
}

/** `r.failures` as one line, for assertion messages. */
export function why(r: LoadResult): string {
  return `statuses ${JSON.stringify(r.statuses)}; first failures: ${r.failures.join(" | ")}`;
}
