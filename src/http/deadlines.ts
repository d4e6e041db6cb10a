/** One pending deadline: `cancel()` once the work it bounds is done. */
export interface Deadline {
  cancel(): void;
}

/** What a deadline runs when it comes due: a function, or an object told through its `expire` (no closure per deadline). */
export type OnExpiry = (() => void) | { expire(): void };

class Entry implements Deadline {
  constructor(
    readonly at: number,
    readonly run: OnExpiry,
    readonly queue: Set<Entry>,
  ) {}

  cancel(): void {
    this.queue.delete(this);
  }
}

/**
 * Deadlines that all lie the same time ahead (a listener's requestTimeoutS,
 * its bodyTimeoutS), behind one timer. A timer per request was two of a
 * forwarded request's measurable costs (set, then cleared); with a fixed delay
 * the deadlines come due in the order they were added, so a Set in insertion
 * order is the queue, cancelling is a delete, and only its head needs a timer.
 *
 * @example const late = new Deadlines(30_000); const d = late.add(() => abort()); … d.cancel();
 */
export class Deadlines {
  readonly #pending = new Set<Entry>();
  #timer: ReturnType<typeof setTimeout> | null = null;

  constructor(readonly ms: number) {}

  /** Runs `fn` (or `fn.expire()`) `ms` from now unless cancelled first. */
  add(fn: OnExpiry): Deadline {
    const e = new Entry(performance.now() + this.ms, fn, this.#pending);
    this.#pending.add(e);
    if (!this.#timer) this.#arm(this.ms);
    return e;
  }

  /** Deadlines not yet due nor cancelled. */
  get size(): number {
    return this.#pending.size;
  }

  #arm(delay: number): void {
    this.#timer = setTimeout(() => this.#fire(), Math.max(1, Math.ceil(delay)));
    // The work a deadline bounds keeps the process alive, not the deadline: a cancelled one stays
    // armed here until its time, and held a script that called serve.shutdown() for requestTimeoutS.
    this.#timer.unref();
  }

  #fire(): void {
    this.#timer = null;
    const now = performance.now();
    for (const e of this.#pending) {
      if (e.at > now) return this.#arm(e.at - now);
      this.#pending.delete(e);
      try {
        const run = e.run;
        if (typeof run === "function") run();
        else run.expire();
      } catch (err) {
        queueMicrotask(() => {
          throw err; // as a throwing timer callback would: reported, and the other deadlines still run
        });
      }
    }
  }
}
