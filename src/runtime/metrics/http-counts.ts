/** Latency buckets of the data plane's request histogram, in seconds, from a no-op hop to a slow model. */
export const HTTP_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** One application's requests as one data-plane listener saw them: by status code, and a latency histogram. */
export interface HttpAppCounts {
  codes: Record<string, number>;
  /** Per HTTP_BUCKETS bound: requests answered within it (cumulative, Prometheus style). */
  buckets: number[];
  sum: number;
  count: number;
}

/**
 * What a data-plane listener counted, by application (empty: no route
 * matched), cumulative since it started. Plain data: an ingress replica's
 * listener sends its counts to the main process in its metrics snapshot.
 */
export type HttpCounts = Record<string, HttpAppCounts>;

/** Adds `from` into `into`, application by application. */
export function addHttpCounts(into: HttpCounts, from: HttpCounts): HttpCounts {
  for (const [app, f] of Object.entries(from)) {
    const t = (into[app] ??= { codes: {}, buckets: HTTP_BUCKETS.map(() => 0), sum: 0, count: 0 });
    for (const [code, n] of Object.entries(f.codes)) t.codes[code] = (t.codes[code] ?? 0) + n;
    f.buckets.forEach((n, i) => (t.buckets[i] = (t.buckets[i] ?? 0) + n));
    t.sum += f.sum;
    t.count += f.count;
  }
  return into;
}
