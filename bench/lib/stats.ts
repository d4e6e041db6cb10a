/** Summary of a series of samples: what every scenario reports. */
export interface Summary {
  n: number;
  mean: number;
  median: number;
  p99: number;
  min: number;
  max: number;
}

/** Nearest-rank percentile of sorted samples (p in 0..100). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export function summarize(samples: readonly number[]): Summary {
  const s = [...samples].sort((a, b) => a - b);
  const sum = s.reduce((a, b) => a + b, 0);
  return { n: s.length, mean: s.length ? sum / s.length : NaN, median: percentile(s, 50), p99: percentile(s, 99), min: s[0] ?? NaN, max: s[s.length - 1] ?? NaN };
}

/** Median of a few per-round figures (rates, percentiles from a load generator). */
export function median(values: readonly number[]): number {
  return percentile([...values].sort((a, b) => a - b), 50);
}

/** Rounds for the JSON files: enough digits to compare, no float noise. */
export function round(v: number, digits = 3): number {
  if (!Number.isFinite(v)) return v;
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

export function roundSummary(s: Summary, digits = 3): Summary {
  return { n: s.n, mean: round(s.mean, digits), median: round(s.median, digits), p99: round(s.p99, digits), min: round(s.min, digits), max: round(s.max, digits) };
}

/** µs per iteration of `fn`, run `n` times after a warm-up. */
export function microbench(n: number, fn: () => void): number {
  for (let i = 0; i < Math.min(n, 2000); i++) fn();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) fn();
  return ((performance.now() - t0) * 1000) / n;
}
