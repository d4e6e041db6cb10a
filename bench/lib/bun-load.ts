/**
 * Fallback HTTP load generator, used only when wrk cannot be installed:
 * `connections` closed loops of POSTs for `durationS`, then one JSON line.
 *   bun bench/lib/bun-load.ts '{"url":…,"body":…,"connections":64,"durationS":5}'
 */
import { summarize } from "./stats.ts";
import type { LoadResult, LoadSpec } from "./load.ts";

const spec = JSON.parse(process.argv[2]!) as LoadSpec;
const latencies: number[] = [];
let errors = 0;
const end = performance.now() + spec.durationS * 1000;
const init = { method: "POST", body: spec.body, headers: { "content-type": "application/json" } };

async function loop(): Promise<void> {
  while (performance.now() < end) {
    const t0 = performance.now();
    try {
      const res = await fetch(spec.url, init);
      await res.arrayBuffer();
      if (res.status >= 300) errors++;
    } catch {
      errors++;
    }
    latencies.push(performance.now() - t0);
  }
}

const start = performance.now();
await Promise.all(Array.from({ length: spec.connections }, loop));
const elapsed = (performance.now() - start) / 1000;
const s = summarize(latencies);
const out: LoadResult = { requests: latencies.length, rps: latencies.length / elapsed, latencyMs: { mean: s.mean, median: s.median, p99: s.p99 }, errors };
console.log(JSON.stringify(out));
