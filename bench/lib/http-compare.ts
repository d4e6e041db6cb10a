/**
 * Throughput of a serve-bin server against a baseline HTTP server, with the
 * same load generator and body, in alternating rounds.
 */
import { CpuMeter } from "./cpu.ts";
import { BUN } from "./paths.ts";
import { loadGenerator, type LoadResult } from "./load.ts";
import type { Ctx } from "./scenario.ts";
import { alternate } from "./scenario.ts";
import { startServeBin } from "./server.ts";
import { median, round } from "./stats.ts";

export interface HttpCompare {
  generator: string;
  serveBin: LoadResult[];
  baseline: LoadResult[];
  connections: number;
  durationS: number;
  /** CPU time per request of each serve-bin process (main = the proxy) and of the baseline, in µs. */
  cpuUsPerRequest: { serveBin: Record<string, number>; baseline: Record<string, number> };
}

export interface HttpCompareSpec {
  /** Graph module served with `serve-bin run`. */
  target: string;
  /** Path under the server's URL. */
  path: string;
  /** A script that serves the baseline and prints "listening on <url>". */
  baselineScript: string;
  body: unknown;
  /** The answer both must give (checked once before the load). */
  expected: string;
}

export async function compareHttp(ctx: Ctx, spec: HttpCompareSpec): Promise<HttpCompare> {
  const { quick, procs, log } = ctx;
  const gen = await loadGenerator(procs, log);
  const rounds = quick ? 1 : 3;
  const durationS = quick ? 1 : 4;
  const connections = 64;
  const body = JSON.stringify(spec.body);
  const server = await startServeBin(procs, spec.target);
  const base = procs.spawn("baseline", [BUN, spec.baselineScript]);
  try {
    const baseUrl = (await base.waitFor(/listening on (http:\/\/\S+)/, 10_000))[1]!;
    const urls = { serveBin: server.url + spec.path, baseline: baseUrl + spec.path };
    for (const [who, url] of Object.entries(urls)) {
      const res = await fetch(url, { method: "POST", body, headers: { "content-type": "application/json" } });
      const text = await res.text();
      if (res.status !== 200 || text.trim() !== spec.expected) throw new Error(`${who} at ${url} answered ${res.status} ${text.slice(0, 300)}; expected ${spec.expected}`);
    }
    // Warm both (JIT, connection pools) before anything counts.
    for (const url of Object.values(urls)) await gen.run({ url, body, connections, durationS: 1 });
    const out: HttpCompare = { generator: gen.name, serveBin: [], baseline: [], connections, durationS, cpuUsPerRequest: { serveBin: {}, baseline: {} } };
    const pids: Record<string, number> = { "main (proxy)": server.pid };
    for (const [name, ps] of Object.entries(await server.replicaPids())) ps.forEach((p, i) => (pids[ps.length > 1 ? `${name}#${i}` : name] = p));
    const serveCpu = new CpuMeter(pids);
    const baseCpu = new CpuMeter({ baseline: base.pid });
    log(`${rounds} alternating rounds of ${durationS} s at ${connections} connections with ${gen.name}`);
    await alternate(
      rounds,
      async () => void out.serveBin.push(await serveCpu.measure(() => gen.run({ url: urls.serveBin, body, connections, durationS }))),
      async () => void out.baseline.push(await baseCpu.measure(() => gen.run({ url: urls.baseline, body, connections, durationS }))),
    );
    const count = (rs: LoadResult[]) => rs.reduce((a, r) => a + r.requests, 0);
    out.cpuUsPerRequest = { serveBin: serveCpu.perUnitUs(count(out.serveBin)), baseline: baseCpu.perUnitUs(count(out.baseline)) };
    return out;
  } finally {
    await base.stop();
    await server.stop();
  }
}

/** Medians over rounds of what the generator reported. */
export function medians(rs: LoadResult[]): { rps: number; median: number; p99: number; mean: number; errors: number; requests: number } {
  return {
    rps: round(median(rs.map((r) => r.rps)), 1),
    median: round(median(rs.map((r) => r.latencyMs.median)), 3),
    p99: round(median(rs.map((r) => r.latencyMs.p99)), 3),
    mean: round(median(rs.map((r) => r.latencyMs.mean)), 3),
    errors: rs.reduce((a, r) => a + r.errors, 0),
    requests: rs.reduce((a, r) => a + r.requests, 0),
  };
}
