/**
 * Model multiplexing (Ray's `@serve.multiplexed`): a replica holds up to
 * `maxModelsPerReplica` models, by id, in a least-recently-used cache; each
 * request names its model (HTTP header `serve-multiplexed-model-id`, or
 * `handle.options({ multiplexedModelId })`); routers prefer a replica that
 * already has that model loaded, which they learn from the replica's answers.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { ServeError } from "../error.ts";
import { liveHeaders, type WireRequest } from "./wire-request.ts";

type AnyFunction = (...args: any[]) => any;

/** The HTTP request header that names the model a request wants. */
export const MULTIPLEX_HEADER = "serve-multiplexed-model-id";
/** The longest model id a request may carry. */
export const MAX_MODEL_ID_LENGTH = 256;

export interface MultiplexOptions {
  /** Models one replica keeps loaded; loading one more evicts the least recently used. Default 3. */
  maxModelsPerReplica?: number;
}

const storage = new AsyncLocalStorage<string>();

/**
 * The model id the current request carries ("" when it carries none).
 * @example
 * const model = await this.getModel(multiplexedModelId());
 */
export function multiplexedModelId(): string {
  return storage.getStore() ?? "";
}

/** Runs `fn` with `id` as the current request's model id (the runtime calls this). */
export function withModelId<T>(id: string, fn: () => T): T {
  return storage.run(id, fn);
}

/** The current model id, or undefined when the request carries none. */
export function currentModelId(): string | undefined {
  return storage.getStore() || undefined;
}

/** Refuses a model id that is empty or longer than MAX_MODEL_ID_LENGTH. */
export function checkModelId(id: string): string {
  if (id.length === 0 || id.length > MAX_MODEL_ID_LENGTH) {
    throw new ServeError("bad_request", `a multiplexed model id must be 1..${MAX_MODEL_ID_LENGTH} characters (got ${id.length}); send it in the ${MULTIPLEX_HEADER} header or handle.options({ multiplexedModelId })`);
  }
  return id;
}

const NEEDLE = new TextEncoder().encode(`${MULTIPLEX_HEADER}:`);

/** The model id a request names: from its live headers when it came in this process, else from the packed ones. */
export function modelIdOf(w: WireRequest): string | undefined {
  const live = liveHeaders(w);
  if (!live) return modelIdFromHead(w.head);
  const id = live.get(MULTIPLEX_HEADER);
  return id === null ? undefined : checkModelId(id.trim());
}

/** The model id in packed "name:value\n" headers (names lower-case, as Web Headers give them), if any. */
export function modelIdFromHead(head: Uint8Array): string | undefined {
  // Looks at the start of each line only: no Buffer view or search over the whole head per request.
  for (let at = 0; at < head.length; ) {
    let end = head.indexOf(0x0a, at);
    if (end < 0) end = head.length;
    if (head[at] === NEEDLE[0] && end - at >= NEEDLE.length && startsWithNeedle(head, at)) {
      return checkModelId(new TextDecoder().decode(head.subarray(at + NEEDLE.length, end)).trim());
    }
    at = end + 1;
  }
  return undefined;
}

function startsWithNeedle(head: Uint8Array, at: number): boolean {
  for (let i = 1; i < NEEDLE.length; i++) if (head[at + i] !== NEEDLE[i]) return false;
  return true;
}

/** Every model cache in this process (a replica hosts one deployment, so usually one). */
const caches = new Set<ModelCache>();

/** Model ids loaded in this process, least recently used first: what a replica reports to its callers. */
export function loadedModelIds(): string[] {
  const out: string[] = [];
  for (const c of caches) out.push(...c.ids());
  return out;
}

/** An LRU of loaded models for one instance's multiplexed method. */
class ModelCache {
  readonly #models = new Map<string, Promise<unknown>>();
  constructor(
    readonly max: number,
    readonly load: (id: string) => Promise<unknown>,
  ) {
    caches.add(this);
  }

  ids(): string[] {
    return [...this.#models.keys()];
  }

  get(id: string): Promise<unknown> {
    const hit = this.#models.get(id);
    if (hit) {
      this.#models.delete(id); // re-insert: Map order is the recency order
      this.#models.set(id, hit);
      return hit;
    }
    while (this.#models.size >= this.max) {
      const [oldest, model] = this.#models.entries().next().value!;
      this.#models.delete(oldest);
      void model.then(dispose, () => {});
    }
    const loading = Promise.resolve().then(() => this.load(id));
    this.#models.set(id, loading);
    loading.catch(() => this.#models.get(id) === loading && this.#models.delete(id)); // a failed load is not cached
    return loading;
  }
}

/** Frees an evicted model if it knows how: `[Symbol.asyncDispose]`, `[Symbol.dispose]`, `dispose()` or `release()`. */
async function dispose(model: unknown): Promise<void> {
  if (typeof model !== "object" || model === null) return;
  const m = model as Record<PropertyKey, unknown>;
  const fn = m[Symbol.asyncDispose] ?? m[Symbol.dispose] ?? m.dispose ?? m.release;
  if (typeof fn === "function") await (fn as () => unknown).call(model);
}

function checkMax(opts: MultiplexOptions | undefined): number {
  const max = opts?.maxModelsPerReplica ?? 3;
  if (!Number.isInteger(max) || max < 1) {
    throw new ServeError("invalid", `multiplexed({ maxModelsPerReplica }) must be a whole number ≥ 1 (got ${String(max)}); it is how many models one replica keeps loaded`);
  }
  return max;
}

const CACHE = Symbol("serve-bin.multiplexed.cache");

function cachedMethod(original: AnyFunction, name: string, max: number): AnyFunction {
  const key = Symbol(`${String(CACHE.description)}.${name}`);
  const wrapper = function (this: Record<symbol, ModelCache | undefined>, id: string) {
    if (typeof id !== "string") throw new ServeError("invalid", `${name}(modelId) takes a string model id; pass multiplexedModelId()`);
    checkModelId(id);
    const cache = (this[key] ??= new ModelCache(max, (m) => original.call(this, m)));
    return cache.get(id);
  };
  Object.defineProperty(wrapper, "name", { value: name });
  return wrapper;
}

/** A decorator in either TypeScript dialect: standard (Bun's default) or experimentalDecorators. */
export interface MultiplexDecorator {
  <F extends (id: string) => unknown>(value: F, context: ClassMethodDecoratorContext): F;
  (target: object, key: string | symbol, descriptor: PropertyDescriptor): PropertyDescriptor;
}

/**
 * Turns a method that loads a model by id into a cached one: each replica
 * keeps up to `maxModelsPerReplica` models, evicts the least recently used
 * when it loads one more (calling its `dispose()`, `release()` or
 * `[Symbol.asyncDispose]()` if it has one), and loads each id once even when
 * calls for it arrive together. Routers send a request to a replica that has
 * its model loaded when one can take it.
 * @example
 * class Models {
 *   @multiplexed({ maxModelsPerReplica: 2 })
 *   async getModel(id: string) { return ort.InferenceSession.create(`/models/${id}.onnx`); }
 *   async __call__(x: Float32Array) { return (await this.getModel(multiplexedModelId())).run(...); }
 * }
 */
export function multiplexed(options?: MultiplexOptions): MultiplexDecorator {
  const max = checkMax(options);
  return ((a: unknown, b: unknown, c?: PropertyDescriptor) => {
    if (typeof a === "function" && typeof b === "object" && b !== null && "kind" in b) {
      const ctx = b as ClassMethodDecoratorContext;
      if (ctx.kind !== "method") throw new ServeError("build", `@multiplexed decorates the method that loads a model by id, not a ${ctx.kind}`);
      return cachedMethod(a as AnyFunction, String(ctx.name), max);
    }
    if (c && typeof c.value === "function") {
      c.value = cachedMethod(c.value as AnyFunction, String(b), max);
      return c;
    }
    throw new ServeError("build", "@multiplexed(...) goes on the class method that loads a model by id");
  }) as MultiplexDecorator;
}
