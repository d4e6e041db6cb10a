/** Latency buckets in seconds (upper bounds), from a no-op hop to a slow model. */
export const LATENCY_BUCKETS: readonly number[] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** Batch-size buckets (upper bounds, items per batch). */
export const BATCH_BUCKETS: readonly number[] = [1, 2, 4, 8, 16, 32, 64, 128, 256];

/** A histogram as it travels: per-bucket counts (not cumulative; the last is +Inf), their sum and count. */
export interface HistogramData {
  counts: number[];
  sum: number;
  count: number;
}

/**
 * A fixed-bucket histogram: an observation is a short scan and two adds, no
 * allocation. Counts are kept per bucket and made cumulative only when the
 * text format is written.
 */
export class Histogram {
  readonly #counts: Float64Array;
  #sum = 0;
  #count = 0;

  constructor(readonly bounds: readonly number[]) {
    this.#counts = new Float64Array(bounds.length + 1);
  }

  observe(v: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > b[i]!) i++;
    this.#counts[i]!++;
    this.#sum += v;
    this.#count++;
  }

  data(): HistogramData {
    return { counts: Array.from(this.#counts), sum: this.#sum, count: this.#count };
  }
}

/** An empty HistogramData for `bounds`. */
export function emptyHistogram(bounds: readonly number[]): HistogramData {
  return { counts: new Array(bounds.length + 1).fill(0), sum: 0, count: 0 };
}

/** `into += add`, bucket by bucket (same bounds). */
export function addHistogram(into: HistogramData, add: HistogramData): void {
  for (let i = 0; i < into.counts.length; i++) into.counts[i]! += add.counts[i] ?? 0;
  into.sum += add.sum;
  into.count += add.count;
}

/** `a - b`, bucket by bucket: what was observed between two readings of one cumulative histogram. */
export function subtractHistogram(a: HistogramData, b: HistogramData): HistogramData {
  return { counts: a.counts.map((c, i) => c - (b.counts[i] ?? 0)), sum: a.sum - b.sum, count: a.count - b.count };
}

/**
 * The q-quantile (0..1), interpolated linearly inside its bucket as
 * Prometheus's histogram_quantile does; null with no observation. A quantile
 * in the +Inf bucket is reported as the highest finite bound.
 */
export function quantile(h: HistogramData, bounds: readonly number[], q: number): number | null {
  if (h.count <= 0) return null;
  const rank = q * h.count;
  let seen = 0;
  for (let i = 0; i < h.counts.length; i++) {
    const c = h.counts[i]!;
    if (seen + c >= rank && c > 0) {
      if (i >= bounds.length) return bounds[bounds.length - 1]!;
      const lo = i === 0 ? 0 : bounds[i - 1]!;
      return lo + (bounds[i]! - lo) * ((rank - seen) / c);
    }
    seen += c;
  }
  return bounds[bounds.length - 1]!;
}
