import { addHttpCounts, HTTP_BUCKETS, type HttpAppCounts, type HttpCounts } from "../runtime/metrics/http-counts.ts";
import { family, labels } from "./prometheus.ts";

/**
 * What a data-plane listener saw, per application: requests by status code
 * and a latency histogram (time to the response head). An observation is a
 * few increments; the text is built only when /metrics is read, merged with
 * what other listeners (ingress replicas) reported through `others`.
 */
export class RequestMetrics {
  readonly #apps: HttpCounts = {};

  constructor(readonly others: () => HttpCounts[] = () => []) {}

  observe(app: string, status: number, seconds: number): void {
    const a: HttpAppCounts = (this.#apps[app] ??= { codes: {}, buckets: HTTP_BUCKETS.map(() => 0), sum: 0, count: 0 });
    a.codes[status] = (a.codes[status] ?? 0) + 1;
    a.sum += seconds;
    a.count++;
    for (let i = 0; i < HTTP_BUCKETS.length; i++) if (seconds <= HTTP_BUCKETS[i]!) a.buckets[i]!++;
  }

  /** This listener's own counts, cumulative (a replica sends them with its metrics). */
  counts(): HttpCounts {
    return this.#apps;
  }

  /** The families in Prometheus text format: this listener's counts and the others'. */
  lines(): string[] {
    const all = addHttpCounts({}, this.#apps);
    for (const c of this.others()) addHttpCounts(all, c);
    const requests: string[] = [];
    const latency: string[] = [];
    for (const [app, a] of Object.entries(all)) {
      for (const [code, n] of Object.entries(a.codes)) requests.push(`serve_bin_http_requests_total${labels({ app, code })} ${n}`);
      HTTP_BUCKETS.forEach((le, i) => latency.push(`serve_bin_http_request_duration_seconds_bucket${labels({ app, le: String(le) })} ${a.buckets[i]}`));
      latency.push(`serve_bin_http_request_duration_seconds_bucket${labels({ app, le: "+Inf" })} ${a.count}`);
      latency.push(`serve_bin_http_request_duration_seconds_sum${labels({ app })} ${a.sum}`);
      latency.push(`serve_bin_http_request_duration_seconds_count${labels({ app })} ${a.count}`);
    }
    return [
      ...family("serve_bin_http_requests_total", "counter", "HTTP requests the data plane answered, by application (empty: no route matched) and status code.", requests),
      ...family("serve_bin_http_request_duration_seconds", "histogram", "Time from a request's arrival at the data plane to its response head, by application.", latency),
    ];
  }
}
