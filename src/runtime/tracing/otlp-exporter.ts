/** One finished span in OTLP/JSON form (ids hex, times as decimal nanosecond strings). */
export interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes: { key: string; value: { stringValue?: string; doubleValue?: number } }[];
  status: { code: number; message?: string };
}

/** Send at most this many spans in one request; more wait for the next flush. */
const MAX_BATCH = 512;
/** Spans kept while the endpoint does not answer; beyond it new ones are dropped (counted). */
const MAX_BUFFER = 8192;

/**
 * Batches a process's spans and POSTs them as OTLP/HTTP JSON to the
 * collector, once a second (a timer that does not keep the process alive)
 * or as soon as a batch is full. A collector that fails loses that batch:
 * tracing never slows or breaks serving.
 */
export class OtlpExporter {
  #buffer: OtlpSpan[] = [];
  #timer: ReturnType<typeof setInterval>;
  dropped = 0;
  #warned = false;

  constructor(
    readonly url: string,
    readonly resource: Record<string, string>,
    everyMs = 1000,
  ) {
    this.#timer = setInterval(() => void this.flush(), everyMs);
    this.#timer.unref?.();
  }

  add(span: OtlpSpan): void {
    if (this.#buffer.length >= MAX_BUFFER) {
      this.dropped++;
      return;
    }
    this.#buffer.push(span);
    if (this.#buffer.length >= MAX_BATCH) void this.flush();
  }

  async flush(): Promise<void> {
    while (this.#buffer.length > 0) {
      const spans = this.#buffer.splice(0, MAX_BATCH);
      const body = {
        resourceSpans: [
          {
            resource: { attributes: Object.entries(this.resource).map(([key, v]) => ({ key, value: { stringValue: v } })) },
            scopeSpans: [{ scope: { name: "serve-bin" }, spans }],
          },
        ],
      };
      try {
        const res = await fetch(this.url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
      } catch (e) {
        this.dropped += spans.length;
        if (!this.#warned) {
          this.#warned = true;
          console.warn(`tracing: the OTLP endpoint ${this.url} refused spans (${(e as Error).message}); spans are dropped until it answers`);
        }
        return;
      }
    }
  }

  close(): void {
    clearInterval(this.#timer);
  }
}

/** The OTLP/HTTP traces URL: as given when it has a path, else with `/v1/traces` added (the collector's default). */
export function tracesUrl(endpoint: string): string {
  const u = new URL(endpoint);
  if (u.pathname === "/" || u.pathname === "") u.pathname = "/v1/traces";
  return u.href;
}
