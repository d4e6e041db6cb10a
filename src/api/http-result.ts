/**
 * A deployment's result as HTTP: a string as text/plain, bytes as
 * application/octet-stream, a Response as is, anything else as JSON (typed
 * arrays as arrays of numbers, BigInt as a string). An async iterable streams:
 * server-sent events when the client accepts text/event-stream, else chunks
 * (strings as they are, other values as JSON lines).
 */
export function toResponse(value: unknown, accept = ""): Response {
  if (value instanceof Response) return value;
  if (typeof value === "string") return new Response(value, { headers: { "content-type": "text/plain; charset=utf-8" } });
  if (value instanceof Uint8Array || value instanceof ArrayBuffer) {
    return new Response(value as Uint8Array<ArrayBuffer>, { headers: { "content-type": "application/octet-stream" } });
  }
  if (isAsyncIterable(value)) return streamResponse(value, accept.includes("text/event-stream"));
  return new Response(toJSON(value), { headers: { "content-type": "application/json" } });
}

/** A response as plain data, the way it travels from an ingress replica to the proxy. */
export interface WireResponseLike {
  status: number;
  headers: [string, string][];
  body: Uint8Array | null;
}

const encoder = new TextEncoder();
const TEXT: [string, string][] = [["content-type", "text/plain; charset=utf-8"]];
const BYTES: [string, string][] = [["content-type", "application/octet-stream"]];
const JSON_TYPE: [string, string][] = [["content-type", "application/json"]];

/**
 * The same encoding as toResponse, straight to plain data, for results that
 * need no Response object; undefined for those that do (a Response, a stream).
 */
export function toWireResponse(value: unknown, _accept = ""): WireResponseLike | undefined {
  if (typeof value === "string") return { status: 200, headers: TEXT, body: encoder.encode(value) };
  if (value instanceof Uint8Array) return { status: 200, headers: BYTES, body: value };
  if (value instanceof ArrayBuffer) return { status: 200, headers: BYTES, body: new Uint8Array(value) };
  if (value instanceof Response || isAsyncIterable(value)) return undefined;
  return { status: 200, headers: JSON_TYPE, body: encoder.encode(toJSON(value)) };
}

/** JSON.stringify that writes typed arrays as number arrays and BigInt as strings. */
export function toJSON(value: unknown): string {
  const v = value === undefined ? null : value;
  // A replacer is called back for every key; most results are plain data, which need none.
  return plainJSON(v, 0) ? JSON.stringify(v) : JSON.stringify(v, jsonReplacer);
}

/**
 * Whether JSON.stringify writes `v` the same with and without jsonReplacer:
 * only primitives (not BigInt), arrays and plain objects, not too deep to walk.
 */
function plainJSON(v: unknown, depth: number): boolean {
  if (v === null || typeof v !== "object") return typeof v !== "bigint";
  if (depth > 32) return false;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) if (!plainJSON(v[i], depth + 1)) return false;
    return true;
  }
  const proto = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) return false;
  for (const k in v) if (k === "toJSON" || !plainJSON((v as Record<string, unknown>)[k], depth + 1)) return false;
  return true;
}

function jsonReplacer(this: unknown, _key: string, v: unknown): unknown {
  if (typeof v === "bigint") return v.toString();
  if (ArrayBuffer.isView(v) && !(v instanceof DataView)) return Array.from(v as unknown as ArrayLike<number | bigint>, (x) => (typeof x === "bigint" ? x.toString() : x));
  if (v instanceof Map) return Object.fromEntries(v);
  if (v instanceof Set) return [...v];
  return v;
}

export function isAsyncIterable(v: unknown): v is AsyncIterable<unknown> {
  return typeof v === "object" && v !== null && typeof (v as Record<symbol, unknown>)[Symbol.asyncIterator] === "function";
}

/** A chunk as text: strings as they are (tokens), anything else as one JSON line, so a client can split them. */
function chunkText(chunk: unknown, sse: boolean): string {
  if (typeof chunk === "string") return chunk;
  return sse ? toJSON(chunk) : `${toJSON(chunk)}\n`;
}

function streamResponse(source: AsyncIterable<unknown>, sse: boolean): Response {
  const encoder = new TextEncoder();
  const it = source[Symbol.asyncIterator]();
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { value, done } = await it.next();
        if (done) return controller.close();
        if (value instanceof Uint8Array && !sse) return controller.enqueue(value);
        const text = chunkText(value, sse);
        controller.enqueue(encoder.encode(sse ? `data: ${text.replaceAll("\n", "\ndata: ")}\n\n` : text));
      } catch (e) {
        if (sse) {
          controller.enqueue(encoder.encode(`event: error\ndata: ${toJSON({ error: (e as Error).message })}\n\n`));
          controller.close();
        } else controller.error(e);
      }
    },
    async cancel() {
      await it.return?.();
    },
  });
  const type = sse ? "text/event-stream" : "text/plain; charset=utf-8";
  const res = new Response(body, { headers: { "content-type": type, "cache-control": "no-cache" } });
  streaming.add(res);
  return res;
}

const streaming = new WeakSet<Response>();

/** Whether a Response's body should be forwarded chunk by chunk rather than whole. */
export function isStreamingResponse(res: Response): boolean {
  return streaming.has(res) || (res.headers.get("content-type") ?? "").startsWith("text/event-stream");
}
