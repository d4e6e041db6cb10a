import { OtlpExporter, tracesUrl, type OtlpSpan } from "./otlp-exporter.ts";
import { formatTraceparent, parseTraceparent, randomHex } from "./traceparent.ts";

/** `tracing` as a replica gets it. */
export interface TracingSettings {
  otlpEndpoint: string;
  sampleRatio: number;
}

/** Who records: goes on every span (and the resource) so a trace names deployment and replica. */
export interface SpanOwner {
  app: string;
  deployment: string;
  replica: string;
}

/** A span being recorded: the traceparent its children carry, and how to end it. */
export interface ActiveSpan {
  /** The `traceparent` for calls made inside this span. */
  readonly traceparent: string;
  end(status: string | undefined): void;
}

const nowNs = () => BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));

/**
 * Starts one SERVER span per deployment call. Sampling is decided once per
 * trace, where it starts (the ingress, for a request with no sampled
 * parent), by `sampleRatio`; a call inside an unsampled trace records
 * nothing and passes its parent's traceparent on unchanged.
 */
export class Tracer {
  readonly exporter: OtlpExporter;

  constructor(
    readonly settings: TracingSettings,
    readonly owner: SpanOwner,
  ) {
    this.exporter = new OtlpExporter(tracesUrl(settings.otlpEndpoint), {
      "service.name": "serve-bin",
      "serve_bin.app": owner.app,
      "serve_bin.deployment": owner.deployment,
      "serve_bin.replica": owner.replica,
      "process.pid": String(process.pid),
    });
  }

  /**
   * A span for a call whose caller sent `parent` (a traceparent) or, for a
   * request entering the graph, whose HTTP request carried `parent`.
   * `root`: the call may start a new trace (an ingress's HTTP call).
   * Null when nothing is recorded and nothing is passed on; a span whose end
   * does nothing when the trace is not sampled (its traceparent passes on).
   */
  start(name: string, parent: string | undefined, root: boolean, attrs: { requestId: string; queueWaitMs?: number }): ActiveSpan | null {
    const p = parseTraceparent(parent);
    if (p && !p.sampled) return { traceparent: parent!, end() {} };
    if (!p && !(root && Math.random() < this.settings.sampleRatio)) return null;
    const traceId = p?.traceId ?? randomHex(16);
    const spanId = randomHex(8);
    const start = nowNs();
    const traceparent = formatTraceparent({ traceId, spanId, sampled: true });
    return {
      traceparent,
      end: (status) => {
        const attributes: OtlpSpan["attributes"] = [
          { key: "serve_bin.app", value: { stringValue: this.owner.app } },
          { key: "serve_bin.deployment", value: { stringValue: this.owner.deployment } },
          { key: "serve_bin.replica", value: { stringValue: this.owner.replica } },
          { key: "serve_bin.status", value: { stringValue: status ?? "ok" } },
          { key: "serve_bin.request_id", value: { stringValue: attrs.requestId } },
        ];
        if (attrs.queueWaitMs !== undefined) attributes.push({ key: "serve_bin.queue_wait_ms", value: { doubleValue: attrs.queueWaitMs } });
        this.exporter.add({
          traceId,
          spanId,
          ...(p ? { parentSpanId: p.spanId } : {}),
          name,
          kind: 2,
          startTimeUnixNano: String(start),
          endTimeUnixNano: String(nowNs()),
          attributes,
          status: status === undefined ? { code: 1 } : { code: 2, message: status },
        });
      },
    };
  }
}

let current: Tracer | null = null;

/** This process's tracer (a replica has one when `tracing.otlpEndpoint` is set), or null: tracing off. */
export function processTracer(): Tracer | null {
  return current;
}

/** Sets this process's tracer (the replica entry, at start). */
export function setProcessTracer(t: Tracer | null): void {
  current = t;
}
