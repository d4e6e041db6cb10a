import { unpackHeaders, type WireRequest } from "../../api/wire-request.ts";
import { HTTP_METHOD, type DataMessage } from "../channel/messages.ts";
import { processTracer, type ActiveSpan } from "./tracer.ts";

/** The client's `traceparent` header on a request entering the graph (headers are unpacked only when tracing is on). */
function clientTraceparent(w: WireRequest | undefined): string | undefined {
  if (!w?.head) return undefined;
  for (const [k, v] of unpackHeaders(w.head)) if (k.toLowerCase() === "traceparent") return v;
  return undefined;
}

/**
 * The span of one call a replica serves: named `<deployment>.<method>`
 * (`<deployment>` for a function or `__call__`, `<deployment> HTTP` for the
 * ingress), parented on the caller's span, or on the client's traceparent
 * for a request entering the graph, which may also start a new trace.
 * Null at once when tracing is off.
 */
export function startCallSpan(deployment: string, msg: Extract<DataMessage, { t: "call" }>): ActiveSpan | null {
  const tracer = processTracer();
  if (!tracer) return null;
  const http = msg.m === HTTP_METHOD;
  const name = http ? `${deployment} HTTP` : msg.m && msg.m !== "__call__" ? `${deployment}.${msg.m}` : deployment;
  const parent = msg.tp ?? (http ? clientTraceparent(msg.a[0] as WireRequest) : undefined);
  return tracer.start(name, parent, http, { requestId: msg.r, ...(msg.q !== undefined ? { queueWaitMs: msg.q } : {}) });
}
