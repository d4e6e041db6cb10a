import type { z } from "zod";
import { ServeError } from "../error.ts";

/** Turns an HTTP request into the graph's input. Runs in the ingress replica. */
export type HttpAdapter<T = unknown> = (req: Request) => T | Promise<T>;

/**
 * The Web `Request` itself, for an ingress's own use. It cannot be passed on
 * to other deployments: the wire codec does not carry it.
 */
export const rawRequest: HttpAdapter<Request> = (req) => req;

const BODY_PARSER = Symbol.for("serve-bin.body-parser");
type BodyParser<T> = (body: Uint8Array) => T | Promise<T>;
const decoder = new TextDecoder();

/**
 * Marks an adapter that needs only the body bytes, so the ingress can skip
 * building a Web Request for it.
 */
function fromBody<T>(parse: BodyParser<T>): HttpAdapter<T> {
  const adapter: HttpAdapter<T> = async (req) => parse(new Uint8Array(await req.arrayBuffer()));
  return Object.assign(adapter, { [BODY_PARSER]: parse });
}

/** The adapter's body-only form, if it has one. */
export function bodyParserOf(adapter: HttpAdapter): BodyParser<unknown> | undefined {
  return (adapter as { [BODY_PARSER]?: BodyParser<unknown> })[BODY_PARSER];
}

/**
 * How deep a JSON body may nest. The wire codec carries 500 levels; the graph
 * wraps the body in its own arguments and results, so a body gets fewer.
 */
export const MAX_JSON_DEPTH = 200;

function parseJSON(body: Uint8Array): unknown {
  let value: unknown;
  const text = decoder.decode(body);
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new ServeError("bad_request", `the request body is not valid JSON (${(e as Error).message}); send a JSON document`);
  }
  // Nesting past the limit takes more brackets than a short text holds, and the
  // key can only come from its name or an escape: most bodies skip the walk.
  if (text.length <= MAX_JSON_DEPTH && !text.includes("__proto__") && !text.includes("\\u")) return value;
  const refused = jsonProblem(value);
  if (refused) throw new ServeError("bad_request", `the request body cannot be used: ${refused}`);
  return value;
}

/**
 * What a parsed body holds that no deployment could be handed, or null.
 * JSON.parse makes "__proto__" an own key, which the codec refuses to send
 * on (it would set a receiver's prototype); and nesting past the codec's
 * depth would fail only at the first hop, as a 500. Both are the client's.
 */
function jsonProblem(root: unknown): string | null {
  const stack: [unknown, number][] = [[root, 1]];
  while (stack.length) {
    const [v, depth] = stack.pop()!;
    if (typeof v !== "object" || v === null) continue;
    if (depth > MAX_JSON_DEPTH) return `it nests deeper than ${MAX_JSON_DEPTH} levels; flatten it`;
    if (Array.isArray(v)) {
      for (const x of v) if (typeof x === "object" && x !== null) stack.push([x, depth + 1]);
      continue;
    }
    if (Object.hasOwn(v, "__proto__")) return 'it has a key named "__proto__", which is refused (it would set an object\'s prototype); rename the key';
    for (const x of Object.values(v)) if (typeof x === "object" && x !== null) stack.push([x, depth + 1]);
  }
  return null;
}

/** The body parsed as JSON; 400 when it is not JSON. */
export const jsonRequest: HttpAdapter<unknown> = fromBody(parseJSON);

/** The body as a string. */
export const textRequest: HttpAdapter<string> = fromBody((body) => decoder.decode(body));

/** The body as bytes. */
export const binaryRequest: HttpAdapter<Uint8Array> = fromBody((body) => body);

const DTYPES = {
  float32: Float32Array,
  float64: Float64Array,
  int8: Int8Array,
  int16: Int16Array,
  int32: Int32Array,
  int64: BigInt64Array,
  uint8: Uint8Array,
  uint16: Uint16Array,
  uint32: Uint32Array,
  uint64: BigUint64Array,
} as const;
export type DType = keyof typeof DTYPES;
type TypedArrayOf<D extends DType> = InstanceType<(typeof DTYPES)[D]>;

/** An n-dimensional array: flat data in row-major order and its shape. */
export interface NdArray<D extends DType = DType> {
  data: TypedArrayOf<D>;
  shape: number[];
}

function inferShape(array: unknown): number[] {
  const shape: number[] = [];
  let level: unknown = array;
  while (Array.isArray(level)) {
    shape.push(level.length);
    level = level[0];
  }
  return shape;
}

/**
 * JSON `{ array, shape?, dtype? }` → `{ data, shape }`, `data` a typed array of
 * `dtype` (float32 by default), `shape` inferred from the nesting when absent.
 */
export const ndarrayRequest: HttpAdapter<NdArray> = fromBody((bytes) => {
  const body = parseJSON(bytes) as { array?: unknown; shape?: unknown; dtype?: unknown } | null;
  if (typeof body !== "object" || body === null || !Array.isArray(body.array)) {
    throw new ServeError("bad_request", 'ndarrayRequest expects a JSON object like { "array": [[1, 2], [3, 4]], "dtype": "float32" }');
  }
  const dtype = (body.dtype ?? "float32") as DType;
  const Ctor = DTYPES[dtype];
  if (!Ctor) throw new ServeError("bad_request", `unknown dtype "${String(body.dtype)}"; use one of ${Object.keys(DTYPES).join(", ")}`);
  const flat = (body.array as unknown[]).flat(Infinity) as number[];
  const shape = body.shape === undefined ? inferShape(body.array) : (body.shape as number[]);
  if (!Array.isArray(shape) || !shape.every((n) => Number.isInteger(n) && n >= 0)) {
    throw new ServeError("bad_request", "shape must be an array of non-negative integers");
  }
  const size = shape.reduce((a, b) => a * b, 1);
  if (size !== flat.length) {
    throw new ServeError("bad_request", `shape [${shape.join(", ")}] holds ${size} values but the array has ${flat.length}`);
  }
  const big = dtype === "int64" || dtype === "uint64";
  const data = big ? new (Ctor as BigIntConstructorLike)(flat.map((v) => BigInt(v))) : new (Ctor as NumberCtor)(flat);
  return { data, shape } as NdArray;
});
type BigIntConstructorLike = new (values: bigint[]) => BigInt64Array | BigUint64Array;
type NumberCtor = new (values: number[]) => Float32Array;

/**
 * JSON validated by a zod schema; 422 with zod's issues when it does not match.
 * @example
 * DAGDriver.bind(dag, { httpAdapter: zodRequest(z.object({ text: z.string() })) })
 */
export function zodRequest<S extends z.ZodType>(schema: S): HttpAdapter<z.output<S>> {
  return fromBody((body) => {
    const parsed = schema.safeParse(parseJSON(body));
    if (parsed.success) return parsed.data;
    const issues = parsed.error.issues.map((i) => ({ path: i.path.map((p) => (typeof p === "symbol" ? String(p) : p)), message: i.message }));
    throw new ServeError("invalid", `the request body does not match the schema: ${issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ")}`, {
      issues,
    });
  });
}
