import { family, labels } from "./prometheus.ts";

/** Latency buckets in seconds, from a no-op hop to a slow model. */
const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

interface AppCounts {
  byCode: Map<number, number>;
  buckets: number[];
  sum: number;
  count: number;
}

/**
 * What the proxy saw, per application: requests by status code and a
 * latency histogram (time to the response head). An observation is a few
 * increments; the text is built only when /metrics is read.
 */
export class RequestMetrics {
  readonly #apps = new Map<string, AppCounts>();

  observe(app: string, status: number, seconds: number): void {
    let a = this.#apps.get(app);
    if (!a) this.#apps.set(app, (a = { byCode: new Map(), buckets: BUCKETS.map(() => 0), sum: 0, count: 0 }));
    a.byCode.set(status, (a.byCode.get(status) ?? 0) + 1);
    a.sum += seconds;
    a.count++;
    for (let i = 0; i < BUCKETS.length; i++) if (seconds <= BUCKETS[i]!) a.buckets[i]!++;
  }

  /** The families in Prometheus text format. */
  lines(): string[] {
    const requests: string[] = [];
    const latency: string[] = [];
    for (const [app, a] of this.#apps) {
      for (const [code, n] of a.byCode) requests.push(`serve_bin_http_requests_total${labels({ app, code: String(code) })} ${n}`);
      BUCKETS.forEach((le, i) => latency.push(`serve_bin_http_request_duration_seconds_bucket${labels({ app, le: String(le) })} ${a.buckets[i]}`));
      latency.push(`serve_bin_http_request_duration_seconds_bucket${labels({ app, le: "+Inf" })} ${a.count}`);
      latency.push(`serve_bin_http_request_duration_seconds_sum${labels({ app })} ${a.sum}`);
      latency.push(`serve_bin_http_request_duration_seconds_count${labels({ app })} ${a.count}`);
    }
    return [
      ...family("serve_bin_http_requests_total", "counter", "HTTP requests the proxy answered, by application (empty: no route matched) and status code.", requests),
      ...family("serve_bin_http_request_duration_seconds", "histogram", "Time from a request's arrival at the proxy to its response head, by application.", latency),
    ];
  }
}
