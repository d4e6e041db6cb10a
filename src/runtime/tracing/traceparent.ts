/** A W3C trace context: which trace, which span is the parent, whether the trace is recorded. */
export interface TraceContext {
  traceId: string;
  spanId: string;
  sampled: boolean;
}

const FORMAT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/**
 * Reads a `traceparent` header (W3C Trace Context, version 00; a later
 * version is read by its first four fields, as the spec asks). Invalid or
 * all-zero ids: null, and the request starts a new trace.
 */
export function parseTraceparent(header: string | null | undefined): TraceContext | null {
  const m = header ? FORMAT.exec(header.trim().toLowerCase()) : null;
  if (!m || m[1] === "ff" || (m[1] === "00" && m[5])) return null;
  if (/^0+$/.test(m[2]!) || /^0+$/.test(m[3]!)) return null;
  return { traceId: m[2]!, spanId: m[3]!, sampled: (parseInt(m[4]!, 16) & 1) === 1 };
}

/** The header value for a context. */
export function formatTraceparent(c: TraceContext): string {
  return `00-${c.traceId}-${c.spanId}-${c.sampled ? "01" : "00"}`;
}

/** `bytes` random bytes as lowercase hex (16 for a trace id, 8 for a span id). */
export function randomHex(bytes: number): string {
  const b = crypto.getRandomValues(new Uint8Array(bytes));
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}
