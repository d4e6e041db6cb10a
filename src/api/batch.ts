import { ServeError } from "../error.ts";
import { BATCH_DEFAULTS, batchOptionsSchema, formatIssues, validate, type BatchOptions } from "../config/schema.ts";
import { currentRequestContext, withRequestContext } from "./request-context.ts";

type AnyFunction = (...args: any[]) => any;

/** What `@batch(...)` and `batch(fn, ...)` accept: any of the limits, the rest from BATCH_DEFAULTS. */
export type BatchInput = Partial<BatchOptions>;

/**
 * The mark a batched method or function carries, under the BATCH symbol: its
 * options as written in code. The graph layer reads it to keep
 * maxOngoingRequests at least maxBatchSize.
 */
export interface BatchMark {
  readonly options: Readonly<BatchOptions>;
  /** The method's name (the function's name for `batch(fn)`). */
  readonly name: string;
}

/** Property under which a batched method or function carries its BatchMark. */
export const BATCH = Symbol.for("serve-bin.batch");

interface Mark extends BatchMark {
  readonly original: AnyFunction;
}

let batchObserver: ((size: number) => void) | null = null;

/** Calls `fn` with the size of every batch this process runs (the replica's metrics; one observer). */
export function observeBatches(fn: ((size: number) => void) | null): void {
  batchObserver = fn;
}

/** Where the wrapper keeps what setBatchOptions needs: the original and its options. */
const ORIGINAL = Symbol("serve-bin.batch.original");

interface Waiting {
  args: unknown[];
  at: number;
  requestId?: string;
  signal?: AbortSignal;
  resolve(v: unknown): void;
  reject(e: unknown): void;
  unlisten(): void;
}

function checkOptions(input: unknown, where: string): BatchOptions {
  const r = validate(batchOptionsSchema(), input ?? {});
  if (!r.ok) throw new ServeError("invalid", `invalid batch options for ${where}:\n${formatIssues(r.issues)}`, { issues: r.issues });
  return r.value;
}

/**
 * The batches of one method on one instance (or of one batched function):
 * gathers calls until maxBatchSize or batchWaitTimeoutS after the first,
 * runs one batch at a time, and answers each caller with its own result.
 */
class Batcher {
  #queue: Waiting[] = [];
  #running = false;
  #timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    readonly label: string,
    public options: BatchOptions,
    readonly run: (lists: unknown[][]) => unknown,
  ) {}

  submit(args: unknown[]): Promise<unknown> {
    const ctx = currentRequestContext();
    const signal = ctx?.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const w: Waiting = { args, at: performance.now(), requestId: ctx?.requestId, signal, resolve, reject, unlisten: () => {} };
      if (signal) {
        // A caller that goes away before its batch starts leaves the queue, so it takes no slot.
        const onAbort = () => {
          const i = this.#queue.indexOf(w);
          if (i < 0) return;
          this.#queue.splice(i, 1);
          reject(signal.reason);
        };
        signal.addEventListener("abort", onAbort, { once: true });
        w.unlisten = () => signal.removeEventListener("abort", onAbort);
      }
      this.#queue.push(w);
      this.schedule();
    });
  }

  /** Starts the next batch if it is full or its first caller has waited long enough; else arms a timer. */
  schedule(): void {
    if (this.#running || this.#queue.length === 0) return;
    const waitMs = this.#queue[0]!.at + this.options.batchWaitTimeoutS * 1000 - performance.now();
    if (this.#queue.length >= this.options.maxBatchSize || waitMs <= 0) return void this.#runBatch();
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.schedule();
    }, waitMs);
  }

  async #runBatch(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#running = true;
    const batch = this.#queue.splice(0, this.options.maxBatchSize);
    for (const w of batch) w.unlisten();
    batchObserver?.(batch.length);
    try {
      const out = await withRequestContext(batchContext(batch), () => this.run(transpose(batch)));
      const problem = checkResults(out, batch.length);
      if (problem) throw new TypeError(`${this.label} ${problem}; a batched method must return an array with one result per input, in order`);
      const results = out as unknown[];
      batch.forEach((w, i) => w.resolve(results[i]));
    } catch (e) {
      for (const w of batch) w.reject(e);
    } finally {
      this.#running = false;
      this.schedule();
    }
  }
}

/** Callers' arguments, position by position: the i-th list holds every caller's i-th argument. */
function transpose(batch: Waiting[]): unknown[][] {
  const arity = Math.max(1, ...batch.map((w) => w.args.length));
  return Array.from({ length: arity }, (_, i) => batch.map((w) => w.args[i]));
}

function checkResults(out: unknown, n: number): string | null {
  if (!Array.isArray(out)) return `returned ${out === null ? "null" : typeof out} instead of an array of ${n} results for a batch of ${n}`;
  if (out.length !== n) return `returned ${out.length} result${out.length === 1 ? "" : "s"} for a batch of ${n}`;
  return null;
}

/** The context a batch runs in: every caller's request id, aborted once every caller has gone. */
function batchContext(batch: Waiting[]): { requestId: string; signal: AbortSignal } {
  const requestId = batch.map((w) => w.requestId ?? "").join(",");
  const signals = batch.map((w) => w.signal);
  if (signals.some((s) => s === undefined)) return { requestId, signal: new AbortController().signal };
  const ctl = new AbortController();
  let left = signals.length;
  for (const s of signals as AbortSignal[]) {
    const gone = () => --left === 0 && ctl.abort(new ServeError("cancelled", "every caller of the batch went away"));
    if (s.aborted) gone();
    else s.addEventListener("abort", gone, { once: true });
  }
  return { requestId, signal: ctl.signal };
}

/**
 * This process's admission limit (its deployment's maxOngoingRequests), set
 * by the replica runtime; undefined in local execution, where nothing caps.
 */
let admissionLimit: number | undefined;

/**
 * Tells setBatchOptions how many calls this replica admits at once: a batch
 * larger than that could never fill, so raising maxBatchSize past it is refused.
 */
export function setAdmissionLimit(maxOngoingRequests: number | undefined): void {
  admissionLimit = maxOngoingRequests;
}

/** Batchers per instance (or per batched function), by method name. */
const batchers = new WeakMap<object, Map<string, Batcher>>();

function batcherOf(owner: object, mark: Mark, label: string, self: unknown): Batcher {
  let byName = batchers.get(owner);
  if (!byName) batchers.set(owner, (byName = new Map()));
  let b = byName.get(mark.name);
  if (!b) byName.set(mark.name, (b = new Batcher(label, { ...mark.options }, (lists) => mark.original.apply(self, lists))));
  return b;
}

function ownerLabel(owner: object, name: string): string {
  const cls = typeof owner === "function" ? owner.name : (owner.constructor?.name ?? "");
  return cls ? `${cls}.${name}` : name;
}

function markFn(fn: AnyFunction, mark: Mark): void {
  Object.defineProperty(fn, "name", { value: mark.original.name, configurable: true });
  Object.defineProperty(fn, BATCH, { value: Object.freeze({ options: mark.options, name: mark.name }) });
  Object.defineProperty(fn, ORIGINAL, { value: mark });
}

/** The replacement of a batched method: still a prototype method, called with one item. */
function batchedMethod(original: AnyFunction, name: string, options: BatchOptions): AnyFunction {
  const mark: Mark = { original, name, options };
  const method = function (this: object, ...args: unknown[]): Promise<unknown> {
    if (this === undefined || this === null) {
      return Promise.reject(new ServeError("build", `the batched method ${name} was called without its instance; call it as instance.${name}(item)`));
    }
    return batcherOf(this, mark, ownerLabel(this, name), this).submit(args);
  };
  markFn(method, mark);
  return method;
}

function batchedFunction(original: AnyFunction, options: BatchOptions): AnyFunction {
  const name = original.name || "batched";
  const mark: Mark = { original, name, options };
  const fn = function (...args: unknown[]): Promise<unknown> {
    return batcherOf(fn, mark, name, undefined).submit(args);
  };
  markFn(fn, mark);
  return fn;
}

function isStandardContext(v: unknown): v is DecoratorContext {
  return typeof v === "object" && v !== null && typeof (v as DecoratorContext).kind === "string" && "name" in v;
}

function isDescriptor(v: unknown): v is PropertyDescriptor {
  return typeof v === "object" && v !== null && ("value" in v || "get" in v || "set" in v);
}

function decorate(options: BatchOptions, args: unknown[]): unknown {
  const [a, b, c] = args;
  if (typeof a === "function" && isStandardContext(b)) {
    if (b.kind !== "method") throw new ServeError("build", `@batch decorates methods, not a ${b.kind} (${String(b.name)}); put it on a method that takes an array`);
    return batchedMethod(a as AnyFunction, String(b.name), options);
  }
  if (typeof a === "object" && a !== null && (typeof b === "string" || typeof b === "symbol") && isDescriptor(c)) {
    if (typeof c.value !== "function") throw new ServeError("build", `@batch decorates methods, not the accessor ${String(b)}`);
    c.value = batchedMethod(c.value as AnyFunction, String(b), options);
    return c;
  }
  throw new ServeError("build", "@batch(...) goes on a class method (standard or experimentalDecorators); to batch a function, call batch(fn, options)");
}

type Unbatched<P extends unknown[]> = { [K in keyof P]: P[K] extends readonly (infer E)[] ? E : never };

/** A decorator in either TypeScript dialect: standard (Bun's default) or experimentalDecorators. */
export interface BatchDecorator {
  <F extends AnyFunction>(value: F, context: ClassMethodDecoratorContext): F;
  (target: object, key: string | symbol, descriptor: PropertyDescriptor): PropertyDescriptor;
}

/**
 * Batches calls: callers send one item and get one result; the method (or
 * function) gets an array of up to `maxBatchSize` items, gathered for at most
 * `batchWaitTimeoutS` after the first, and returns an array of results in the
 * same order. One batch runs at a time per method and replica. A throw, or a
 * result that is not an array of the batch's length, fails every caller in it.
 * Works as a standard decorator and under `experimentalDecorators`.
 * @example
 * class Vec {
 *   @batch({ maxBatchSize: 16, batchWaitTimeoutS: 0.005 })
 *   async predict(xs: number[]) { return model.run(xs); }
 * }
 * export const embed = deployment(batch(async function embed(texts: string[]) { return model.embed(texts); }, { maxBatchSize: 32 }));
 */
export function batch(options?: BatchInput): BatchDecorator;
export function batch<P extends unknown[][], R>(fn: (...lists: P) => R[] | Promise<R[]>, options?: BatchInput): (...args: Unbatched<P>) => Promise<R>;
export function batch<F extends AnyFunction>(value: F, context: ClassMethodDecoratorContext): F;
export function batch(target: object, key: string | symbol, descriptor: PropertyDescriptor): PropertyDescriptor;
export function batch(...args: unknown[]): unknown {
  const [a, b] = args;
  // `@batch` without parentheses, in either dialect: the defaults.
  if (args.length === 3 || (typeof a === "function" && isStandardContext(b))) return decorate({ ...BATCH_DEFAULTS }, args);
  if (typeof a === "function") return batchedFunction(a as AnyFunction, checkOptions(b, `batch(${a.name || "fn"})`));
  const options = checkOptions(a, "@batch(...)");
  return (...target: unknown[]) => decorate(options, target);
}

/**
 * Changes a batched method's limits on this instance, live (typically from
 * `reconfigure`). Keys left out keep their current value. Returns the limits
 * now in force. For a function deployment, pass the batched function.
 * In a served replica, a maxBatchSize above the deployment's
 * maxOngoingRequests is refused (raise that first): admission caps batches.
 * @example
 * reconfigure(cfg: { maxBatchSize: number }) { setBatchOptions(this, "predict", { maxBatchSize: cfg.maxBatchSize }); }
 */
export function setBatchOptions(instance: object, method: string, options: BatchInput): BatchOptions;
export function setBatchOptions(fn: AnyFunction, options: BatchInput): BatchOptions;
export function setBatchOptions(owner: object, methodOrOptions: string | BatchInput, maybe?: BatchInput): BatchOptions {
  const byMethod = typeof methodOrOptions === "string";
  const fn = byMethod ? (owner as Record<string, unknown>)[methodOrOptions] : owner;
  const mark = typeof fn === "function" ? ((fn as unknown as Record<symbol, Mark | undefined>)[ORIGINAL]) : undefined;
  const label = byMethod ? ownerLabel(owner, methodOrOptions) : String((owner as AnyFunction).name || "the function");
  if (!mark) {
    throw new ServeError("invalid", `setBatchOptions: ${label} is not batched; decorate the method with @batch(...) or wrap the function with batch(fn, options)`);
  }
  // A batched function keeps its batches on itself; a method, on the instance.
  const b = batcherOf(owner, mark, label, byMethod ? owner : undefined);
  const given = (byMethod ? maybe : methodOrOptions) ?? {};
  const next = checkOptions({ ...b.options, ...given }, `setBatchOptions(${label})`);
  if (admissionLimit !== undefined && next.maxBatchSize > admissionLimit) {
    // Admission (the callers' routers and this replica) stops at maxOngoingRequests: a larger batch would never fill.
    throw new ServeError(
      "invalid",
      `setBatchOptions(${label}): maxBatchSize ${next.maxBatchSize} is above this deployment's maxOngoingRequests (${admissionLimit}), ` +
        `which caps the calls a replica admits, so no batch could grow past ${admissionLimit}; ` +
        `raise maxOngoingRequests to at least ${next.maxBatchSize} first (in the deployment's options or config, or live with PATCH {"maxOngoingRequests": ${next.maxBatchSize}}), then maxBatchSize`,
      { issues: [{ path: ["maxBatchSize"], message: `above maxOngoingRequests ${admissionLimit}` }] },
    );
  }
  b.options = next;
  b.schedule();
  return { ...b.options };
}

/**
 * The largest maxBatchSize written in code on a class's batched methods or
 * on a batched function (0: nothing batched). The graph layer keeps
 * maxOngoingRequests at least this large.
 */
export function maxBatchSizeOf(target: Function): number {
  const own = (target as unknown as Record<symbol, BatchMark | undefined>)[BATCH];
  if (own) return own.options.maxBatchSize;
  let max = 0;
  for (let p = target.prototype; p && p !== Object.prototype; p = Object.getPrototypeOf(p)) {
    for (const k of Object.getOwnPropertyNames(p)) {
      const v = Object.getOwnPropertyDescriptor(p, k)?.value;
      const m = typeof v === "function" ? (v as Record<symbol, BatchMark | undefined>)[BATCH] : undefined;
      if (m) max = Math.max(max, m.options.maxBatchSize);
    }
  }
  return max;
}
