/**
 * Throughput of a serve-bin server against a baseline HTTP server, with the
 * same load generator and body, in alternating rounds.
 */
import { CpuMeter } from "./cpu.ts";
import { BUN } from "./paths.ts";
import { loadGenerator, type LoadResult } from "./load.ts";
import type { Ctx } from "./scenario.ts";
import { startServeBin } from "./server.ts";
import { median, round } from "./stats.ts";

export interface HttpCompare {
  generator: string;
  serveBin: LoadResult[];
  baseline: LoadResult[];
  connections: number;
  durationS: number;
  /** Rounds of each extra baseline of the spec, by its name. */
  others: Record<string, LoadResult[]>;
  /** CPU time per request of each serve-bin process (main = the proxy) and of the baseline (and the others), in µs. */
  cpuUsPerRequest: { serveBin: Record<string, number>; baseline: Record<string, number> } & Record<string, Record<string, number>>;
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
  /** More baselines measured in the same rounds, by name: scripts like `baselineScript`. */
  others?: Record<string, string>;
}

export async function compareHttp(ctx: Ctx, spec: HttpCompareSpec): Promise<HttpCompare> {
  const { quick, procs, log } = ctx;
  const gen = await loadGenerator(procs, log);
  const rounds = quick ? 1 : 3;
  const durationS = quick ? 1 : 4;
  const connections = 64;
  const body = JSON.stringify(spec.body);
  const server = await startServeBin(procs, spec.target);
  const bases = { baseline: spec.baselineScript, ...spec.others };
  const started = Object.entries(bases).map(([name, script]) => ({ name, proc: procs.spawn(name, [BUN, script]) }));
  try {
    const urls: Record<string, string> = { serveBin: server.url + spec.path };
    for (const b of started) urls[b.name] = (await b.proc.waitFor(/listening on (http:\/\/\S+)/, 10_000))[1]! + spec.path;
    for (const [who, url] of Object.entries(urls)) {
      const res = await fetch(url, { method: "POST", body, headers: { "content-type": "application/json" } });
      const text = await res.text();
      if (res.status !== 200 || text.trim() !== spec.expected) throw new Error(`${who} at ${url} answered ${res.status} ${text.slice(0, 300)}; expected ${spec.expected}`);
    }
    // Warm every side (JIT, connection pools, worker threads) before anything counts.
    for (const url of Object.values(urls)) await gen.run({ url, body, connections, durationS: 1 });
    const pids: Record<string, number> = { "main (proxy)": server.pid };
    for (const [name, ps] of Object.entries(await server.replicaPids())) ps.forEach((p, i) => (pids[ps.length > 1 ? `${name}#${i}` : name] = p));
    const meters: Record<string, CpuMeter> = { serveBin: new CpuMeter(pids) };
    for (const b of started) meters[b.name] = new CpuMeter({ [b.name]: b.proc.pid });
    const results: Record<string, LoadResult[]> = Object.fromEntries(Object.keys(urls).map((k) => [k, []]));
    const sides = Object.keys(urls);
    log(`${rounds} rounds of ${durationS} s per side (${sides.join(", ")}; the order rotates) at ${connections} connections with ${gen.name}`);
    for (let r = 0; r < rounds; r++) {
      // Rotating the order spreads drift (heat, other load) over every side alike.
      for (let k = 0; k < sides.length; k++) {
        const side = sides[(r + k) % sides.length]!;
        results[side]!.push(await meters[side]!.measure(() => gen.run({ url: urls[side]!, body, connections, durationS })));
      }
    }
    const count = (rs: LoadResult[]) => rs.reduce((a, x) => a + x.requests, 0);
    const cpu = Object.fromEntries(sides.map((k) => [k, meters[k]!.perUnitUs(count(results[k]!))]));
    const { serveBin, baseline, ...others } = results;
    return { generator: gen.name, serveBin: serveBin!, baseline: baseline!, others, connections, durationS, cpuUsPerRequest: cpu as HttpCompare["cpuUsPerRequest"] };
  } finally {
    for (const b of started) await b.proc.stop();
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
