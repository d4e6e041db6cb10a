/**
 * Throughput of a serve-bin server against a baseline HTTP server, with the
 * same load generator and body, in alternating rounds.
 */
import { CpuMeter } from "./cpu.ts";
import { BUN } from "./paths.ts";
import { loadGenerator, type LoadResult } from "./load.ts";
import type { Ctx } from "./scenario.ts";
import { startServeBin, type ServeBin } from "./server.ts";
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
  /**
   * More sides measured in the same rounds, by name: a script like `baselineScript` (with its arguments,
   * and the pids of processes it calls that its CPU per request should count), or another target served by serve-bin.
   */
  others?: Record<string, Side>;
}

type Side = { script: string; args?: string[]; peers?: Record<string, number> } | { serve: string };

export async function compareHttp(ctx: Ctx, spec: HttpCompareSpec): Promise<HttpCompare> {
  const { quick, procs, log } = ctx;
  const gen = await loadGenerator(procs, log);
  const rounds = quick ? 1 : 3;
  const durationS = quick ? 1 : 4;
  const connections = 64;
  const body = JSON.stringify(spec.body);
  const server = await startServeBin(procs, spec.target);
  const sides: [string, Side][] = Object.entries({ baseline: { script: spec.baselineScript }, ...spec.others });
  const started = sides.flatMap(([name, s]) => ("script" in s ? [{ name, peers: s.peers ?? {}, proc: procs.spawn(name, [BUN, s.script, ...(s.args ?? [])]) }] : []));
  const servers: { name: string; server: ServeBin }[] = [];
  try {
    for (const [name, s] of sides) if ("serve" in s) servers.push({ name, server: await startServeBin(procs, s.serve) });
    const urls: Record<string, string> = { serveBin: server.url + spec.path };
    for (const b of started) urls[b.name] = (await b.proc.waitFor(/listening on (http:\/\/\S+)/, 10_000))[1]! + spec.path;
    for (const b of servers) urls[b.name] = b.server.url + spec.path;
    for (const [who, url] of Object.entries(urls)) {
      const res = await fetch(url, { method: "POST", body, headers: { "content-type": "application/json" } });
      const text = await res.text();
      if (res.status !== 200 || text.trim() !== spec.expected) throw new Error(`${who} at ${url} answered ${res.status} ${text.slice(0, 300)}; expected ${spec.expected}`);
    }
    // Warm every side (JIT, connection pools, worker threads) before anything counts. A replica's call path
    // takes ~15-20k requests to compile: a DAGDriver's CPU per request measured over its first four 1 s
    // runs was 126, 94, 59, 47 µs, so a full run warms 3 s per side.
    for (const url of Object.values(urls)) await gen.run({ url, body, connections, durationS: quick ? 1 : 3 });
    const meters: Record<string, CpuMeter> = { serveBin: new CpuMeter(await processesOf(server)) };
    for (const b of started) meters[b.name] = new CpuMeter({ [b.name]: b.proc.pid, ...b.peers });
    for (const b of servers) meters[b.name] = new CpuMeter(await processesOf(b.server));
    const results: Record<string, LoadResult[]> = Object.fromEntries(Object.keys(urls).map((k) => [k, []]));
    const order = Object.keys(urls);
    log(`${rounds} rounds of ${durationS} s per side (${order.join(", ")}; the order rotates) at ${connections} connections with ${gen.name}`);
    for (let r = 0; r < rounds; r++) {
      // Rotating the order spreads drift (heat, other load) over every side alike.
      for (let k = 0; k < order.length; k++) {
        const side = order[(r + k) % order.length]!;
        results[side]!.push(await meters[side]!.measure(() => gen.run({ url: urls[side]!, body, connections, durationS })));
      }
    }
    const count = (rs: LoadResult[]) => rs.reduce((a, x) => a + x.requests, 0);
    const cpu = Object.fromEntries(order.map((k) => [k, meters[k]!.perUnitUs(count(results[k]!))]));
    const { serveBin, baseline, ...others } = results;
    return { generator: gen.name, serveBin: serveBin!, baseline: baseline!, others, connections, durationS, cpuUsPerRequest: cpu as HttpCompare["cpuUsPerRequest"] };
  } finally {
    for (const b of started) await b.proc.stop();
    for (const b of servers) await b.server.stop();
    await server.stop();
  }
}

/** Pid of every process of a serve-bin server, by name (main = the proxy; replicas by deployment). */
export async function processesOf(server: ServeBin): Promise<Record<string, number>> {
  const pids: Record<string, number> = { "main (proxy)": server.pid };
  for (const [name, ps] of Object.entries(await server.replicaPids())) ps.forEach((p, i) => (pids[ps.length > 1 ? `${name}#${i}` : name] = p));
  return pids;
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
