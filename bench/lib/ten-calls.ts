/**
 * What chain10 and ensemble10 share: one request into a served graph that
 * makes ten handle calls, measured two ways — timed inside the calling replica
 * (which answers with its per-request microseconds), against ten raw
 * ping-pongs to an echo process made the same way (in a row, or at once), and
 * against the same ten calls through ten distinct raw peers (lib/raw-floor.ts:
 * one message per hop and a wake-up per hop, no runtime); and from an HTTP
 * client (sequential POSTs over one kept-alive connection), against the same
 * client's POSTs to a bare Bun.serve. While the HTTP client runs, every
 * process's wake-ups and CPU time are counted. The same HTTP client also
 * measures the graph served with its ten callees colocated, and with
 * `proxy.location: ingress` (the driver replica takes the HTTP connection, no
 * relay through the main process).
 */
import { join } from "node:path";
import { BUN, FIXTURES, LIB } from "./paths.ts";
import { startRawPeer, type RawClient, type RawPeer } from "./raw-client.ts";
import { startRawDriver, startRawFloor } from "./raw-floor.ts";
import { row, type Ctx } from "./scenario.ts";
import type { Row } from "./results.ts";
import { startServeBin, type ServeBin } from "./server.ts";
import { processesOf } from "./http-compare.ts";
import { roundSummary, summarize } from "./stats.ts";
import { WakeupMeter } from "./wakeups.ts";

type Summary = ReturnType<typeof summarize>;

/** One way of serving the graph, measured by the same HTTP client. */
export interface Served {
  /** Sequential POSTs from the bench process, ms. */
  http: Summary;
  /** Wake-ups per HTTP request, by process (main = the proxy), and their total. */
  wakeups: Record<string, number>;
  /** CPU time per HTTP request, by process, µs, and their total. */
  cpuUs: Record<string, number>;
}

export interface TenCalls {
  /** Timed inside the driver replica, ms. */
  served: Summary;
  /** Ten raw ping-pongs with one echo process, ms. */
  raw: Summary;
  /** The same ten calls through ten distinct raw peers (a line of relays, or ten echo peers at once), ms. */
  floor: Summary;
  /** Wake-ups and CPU µs per request of the ten raw peers. */
  floorWakeups: Record<string, number>;
  floorCpuUs: Record<string, number>;
  /** The same POSTs to a bare Bun.serve, ms. */
  httpBare: Summary;
  /** The same POSTs to a bare Bun.serve that makes the ten calls through the ten raw peers (the floor over HTTP of proxy.location ingress's shape), ms. */
  httpFloor: Summary;
  /** The same POSTs to a bare Bun.serve relaying each to a raw driver process that makes the ten calls (the floor of the default shape), ms. */
  httpFloorRelayed: Summary;
  /** Wake-ups and CPU µs per request of every process of the two floors over HTTP (the Bun.serve, the raw driver, the ten peers). */
  httpFloorLoad: { wakeups: Record<string, number>; cpuUs: Record<string, number> };
  httpFloorRelayedLoad: { wakeups: Record<string, number>; cpuUs: Record<string, number> };
  /** The graph as written (main), its ten callees colocated, and with proxy.location ingress. */
  main: Served;
  colocated: Served;
  ingress: Served;
  n: number;
  rounds: number;
}

/** POSTs `body` once over the client's kept-alive connection; throws unless 200. */
async function post(url: string, body: string): Promise<void> {
  const res = await fetch(url, { method: "POST", body, headers: { "content-type": "application/json" } });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`POST ${url} answered ${res.status}: ${text.slice(0, 300)}`);
}

/**
 * @param tenRaw ten calls to one echo peer (in a row, or at once)
 * @param shape how the ten calls cross ten distinct raw peers: a line of relays, or ten at once
 */
export async function measureTenCalls(ctx: Ctx, name: string, tenRaw: (client: RawClient, i: number) => Promise<unknown>, shape: "chain" | "fanout"): Promise<TenCalls> {
  const rounds = ctx.quick ? 2 : 10;
  const perRound = ctx.quick ? 50 : 200;
  const servers: Record<"main" | "colocated" | "ingress", ServeBin> = {
    main: await startServeBin(ctx.procs, join(FIXTURES, `${name}.ts`)),
    colocated: await startServeBin(ctx.procs, join(FIXTURES, `${name}-colocated.yaml`)),
    ingress: await startServeBin(ctx.procs, join(FIXTURES, `${name}-ingress.yaml`)),
  };
  const peer: RawPeer = await startRawPeer(ctx.procs);
  const floorPeers = await startRawFloor(ctx.procs, shape, 10);
  const bare = ctx.procs.spawn("bare Bun.serve", [BUN, join(LIB, "bare-server.ts")]);
  const httpFloor = ctx.procs.spawn("bare Bun.serve over the ten raw peers", [BUN, join(LIB, "http-floor.ts"), shape, ...floorPeers.paths]);
  // The default shape's floor: HTTP in one process, relayed to a raw driver process that makes the ten calls.
  const driver = await startRawDriver(ctx.procs, "raw driver over the ten raw peers", shape, floorPeers.paths);
  let httpRelay: ReturnType<typeof ctx.procs.spawn> | null = null;
  const us: number[] = [];
  const rawUs: number[] = [];
  const floorMs: number[] = [];
  const bareMs: number[] = [];
  const floorHttpMs: number[] = [];
  const floorRelayedMs: number[] = [];
  const httpMs = { main: [] as number[], colocated: [] as number[], ingress: [] as number[] };
  const floorCall = (i: number) => (shape === "chain" ? floorPeers.clients[0]!.call(i) : Promise.all(floorPeers.clients.map((c) => c.call(i))));
  try {
    const bareUrl = (await bare.waitFor(/listening on (http:\/\/\S+)/, 10_000))[1]!;
    const floorUrl = (await httpFloor.waitFor(/listening on (http:\/\/\S+)/, 10_000))[1]!;
    httpRelay = ctx.procs.spawn("bare Bun.serve relaying to the raw driver", [BUN, join(LIB, "http-floor.ts"), "relay", driver.path]);
    const relayedUrl = (await httpRelay.waitFor(/listening on (http:\/\/\S+)/, 10_000))[1]!;
    const meters = {
      main: new WakeupMeter(await processesOf(servers.main)),
      colocated: new WakeupMeter(await processesOf(servers.colocated)),
      ingress: new WakeupMeter(await processesOf(servers.ingress)),
    };
    const floorMeter = new WakeupMeter(floorPeers.pids);
    const httpFloorMeter = new WakeupMeter({ "Bun.serve": httpFloor.pid, ...floorPeers.pids });
    const relayedMeter = new WakeupMeter({ "Bun.serve relay": httpRelay.pid, "raw driver": driver.pid, ...floorPeers.pids });
    const timeHttp = async (url: string, out: number[]) => {
      for (let i = 0; i < perRound; i++) {
        const body = JSON.stringify({ x: i });
        const t0 = performance.now();
        await post(url, body);
        out.push(performance.now() - t0);
      }
    };
    const sides = [
      async () => {
        const res = await fetch(servers.main.url, { method: "POST", body: JSON.stringify({ n: perRound }), headers: { "content-type": "application/json" } });
        us.push(...((await res.json()) as number[]));
      },
      async () => {
        for (let i = 0; i < perRound; i++) {
          const t0 = performance.now();
          await tenRaw(peer.client, i);
          rawUs.push((performance.now() - t0) * 1000);
        }
      },
      () =>
        floorMeter.measure(async () => {
          for (let i = 0; i < perRound; i++) {
            const t0 = performance.now();
            await floorCall(i);
            floorMs.push(performance.now() - t0);
          }
        }),
      () => timeHttp(bareUrl, bareMs),
      () => httpFloorMeter.measure(() => timeHttp(floorUrl, floorHttpMs)),
      () => relayedMeter.measure(() => timeHttp(relayedUrl, floorRelayedMs)),
      ...(["main", "colocated", "ingress"] as const).map((k) => () => meters[k].measure(() => timeHttp(servers[k].url, httpMs[k]))),
    ];
    // Warm every side (JIT, connections) before anything counts. Bun's JIT threads still compile
    // the call path after thousands of requests (bench/wake-probe.ts shows their CPU): 1000 each.
    const warm = ctx.quick ? 100 : 1000;
    await post(servers.main.url, JSON.stringify({ n: warm }));
    for (let i = 0; i < warm; i++) await peer.client.call(i);
    for (let i = 0; i < warm; i++) await floorCall(i);
    for (let i = 0; i < warm; i++) await post(bareUrl, JSON.stringify({ x: i }));
    for (let i = 0; i < warm; i++) await post(floorUrl, JSON.stringify({ x: i }));
    for (let i = 0; i < warm; i++) await post(relayedUrl, JSON.stringify({ x: i }));
    for (const s of Object.values(servers)) for (let i = 0; i < warm; i++) await post(s.url, JSON.stringify({ x: i }));
    ctx.log(`${name}: ${rounds} rounds of ${perRound} requests per side (in the driver, raw ping-pongs, ten distinct raw peers, bare Bun.serve over HTTP, a bare Bun.serve calling the ten raw peers over HTTP, a bare Bun.serve relaying to a raw driver over HTTP, over HTTP as written / with the callees colocated / with proxy.location ingress; the order rotates)`);
    for (let r = 0; r < rounds; r++) for (let k = 0; k < sides.length; k++) await sides[(r + k) % sides.length]!();
    const served = (k: "main" | "colocated" | "ingress"): Served => ({ http: summarize(httpMs[k]), wakeups: meters[k].perUnit(httpMs[k].length), cpuUs: meters[k].cpuPerUnitUs(httpMs[k].length) });
    return {
      served: summarize(us.map((v) => v / 1000)),
      raw: summarize(rawUs.map((v) => v / 1000)),
      floor: summarize(floorMs),
      floorWakeups: floorMeter.perUnit(floorMs.length),
      floorCpuUs: floorMeter.cpuPerUnitUs(floorMs.length),
      httpBare: summarize(bareMs),
      httpFloor: summarize(floorHttpMs),
      httpFloorRelayed: summarize(floorRelayedMs),
      httpFloorLoad: { wakeups: httpFloorMeter.perUnit(floorHttpMs.length), cpuUs: httpFloorMeter.cpuPerUnitUs(floorHttpMs.length) },
      httpFloorRelayedLoad: { wakeups: relayedMeter.perUnit(floorRelayedMs.length), cpuUs: relayedMeter.cpuPerUnitUs(floorRelayedMs.length) },
      main: served("main"),
      colocated: served("colocated"),
      ingress: served("ingress"),
      n: us.length,
      rounds,
    };
  } finally {
    await httpRelay?.stop();
    await driver.close();
    await httpFloor.stop();
    await bare.stop();
    await floorPeers.close();
    await peer.close();
    for (const s of Object.values(servers)) await s.stop();
  }
}

/** What differs between chain10 and ensemble10 in their rows' words. */
export interface TenCallWords {
  /** e.g. "10-deployment linear chain". */
  figure: string;
  /** Label of the two-process raw baseline, without the statistic ("ten raw ping-pongs in a row"). */
  raw: string;
  /** Label of the distinct-process floor, without the statistic. */
  floor: string;
  /** Ray Serve's figure for the in-driver target. */
  ray: string;
}

/** The rows chain10 and ensemble10 report, from one measureTenCalls result. */
export function tenCallRows(name: string, t: TenCalls, w: TenCallWords): Row[] {
  const { served: s, raw: r, floor: f, httpBare: hb } = t;
  const bare = (stat: "mean" | "median" | "p99") => ({ label: `bare Bun.serve, ${stat}`, value: hb[stat] });
  const http = (key: "main" | "colocated" | "ingress", how: string, target: boolean): Row[] => {
    const h = t[key].http;
    const id = key === "main" ? `${name}.http` : `${name}.http-${key}`;
    return [
      row({ id: `${id}-mean`, figure: `${how}, mean`, unit: "ms", value: h.mean, baseline: bare("mean"), ...(target && { target: "≤ 1 ms", met: h.mean <= 1 }), digits: 3 }),
      ...(key === "main" ? [row({ id: `${id}-median`, figure: `${how}, median`, unit: "ms", value: h.median, baseline: bare("median"), digits: 3 })] : []),
      row({ id: `${id}-p99`, figure: `${how}, p99`, unit: "ms", value: h.p99, baseline: bare("p99"), digits: 3 }),
    ];
  };
  /** Each placement's wake-ups beside its shape's floor over HTTP (colocated: beside the default shape's, which it cuts). */
  const wake = (key: "main" | "colocated" | "ingress", id: string, how: string) => {
    const floor = key === "ingress" ? { label: "its floor over HTTP (11 processes), per request", load: t.httpFloorLoad } : { label: "the default shape's floor over HTTP (12 processes), per request", load: t.httpFloorRelayedLoad };
    return row({ id, figure: `wake-ups per HTTP request ${how} (voluntary context switches, all threads)`, unit: "wake-ups", value: t[key].wakeups.total ?? null, baseline: { label: floor.label, value: floor.load.wakeups.total ?? null }, digits: 2 });
  };
  return [
    row({ id: `${name}.mean`, figure: `${w.figure}, one request, mean`, unit: "ms", value: s.mean, baseline: { label: `${w.raw}, mean`, value: r.mean }, target: `≤ 1 ms (Ray Serve: ${w.ray} with handles)`, met: s.mean <= 1, digits: 3 }),
    row({ id: `${name}.p99`, figure: `${w.figure}, p99`, unit: "ms", value: s.p99, baseline: { label: `${w.raw}, p99`, value: r.p99 }, digits: 3 }),
    row({ id: `${name}.floor-mean`, figure: `the same ten calls through ten distinct raw processes (${w.floor}; no runtime, a wake-up per hop), mean: the floor of the un-colocated graph`, unit: "ms", value: f.mean, baseline: { label: `${w.raw}, mean`, value: r.mean }, target: "≤ 1 ms", met: f.mean <= 1, digits: 3 }),
    row({ id: `${name}.vs-floor`, figure: `${w.figure} in the driver over its floor (ten distinct raw processes), mean`, unit: "ms", value: s.mean, baseline: { label: "ten distinct raw processes, mean", value: f.mean }, digits: 3 }),
    ...http("main", "the same, from an HTTP client (sequential POSTs)", true),
    row({ id: `${name}.http-floor-relayed-mean`, figure: `the floor over HTTP of the default shape: the same POSTs to a bare Bun.serve relaying each to a raw driver process that makes the ten calls through the ten distinct raw processes (bench/lib/http-floor.ts relay, bench/lib/driver-peer.ts: 12 processes, as main → driver → ten), mean`, unit: "ms", value: t.httpFloorRelayed.mean, baseline: bare("mean"), target: "≤ 1 ms", met: t.httpFloorRelayed.mean <= 1, digits: 3 }),
    row({ id: `${name}.http-floor-mean`, figure: `the floor over HTTP of proxy.location ingress's shape: the same POSTs to a bare Bun.serve that makes the ten calls through the ten distinct raw processes (bench/lib/http-floor.ts), mean`, unit: "ms", value: t.httpFloor.mean, baseline: bare("mean"), target: "≤ 1 ms", met: t.httpFloor.mean <= 1, digits: 3 }),
    wake("main", `${name}.wakeups`, "as written, all serve-bin processes"),
    row({ id: `${name}.cpu`, figure: "CPU time per HTTP request as written, all serve-bin processes", unit: "µs", value: t.main.cpuUs.total ?? null, baseline: { label: "the default shape's floor over HTTP (12 processes), per request", value: t.httpFloorRelayedLoad.cpuUs.total ?? null }, digits: 0 }),
    ...http("ingress", "the same from an HTTP client with proxy.location ingress (no relay through the main process)", true),
    wake("ingress", `${name}.wakeups-ingress`, "with proxy.location ingress"),
    ...http("colocated", "the same from an HTTP client with the ten callees colocated (colocate: true)", true),
    wake("colocated", `${name}.wakeups-colocated`, "with the callees colocated"),
  ];
}

/** The series chain10 and ensemble10 keep beside their rows. */
export function tenCallSeries(t: TenCalls, servedKey: string): Record<string, unknown> {
  return {
    [servedKey]: roundSummary(t.served, 4),
    rawTenMs: roundSummary(t.raw, 4),
    floorDistinctMs: roundSummary(t.floor, 4),
    floorWakeupsPerRequest: t.floorWakeups,
    floorCpuUsPerRequest: t.floorCpuUs,
    bareHttpMs: roundSummary(t.httpBare, 4),
    floorHttpMs: roundSummary(t.httpFloor, 4),
    floorHttpRelayedMs: roundSummary(t.httpFloorRelayed, 4),
    floorHttpLoad: t.httpFloorLoad,
    floorHttpRelayedLoad: t.httpFloorRelayedLoad,
    httpMs: roundSummary(t.main.http, 4),
    wakeupsPerRequest: t.main.wakeups,
    cpuUsPerRequest: t.main.cpuUs,
    ingressHttpMs: roundSummary(t.ingress.http, 4),
    wakeupsIngress: t.ingress.wakeups,
    cpuUsIngress: t.ingress.cpuUs,
    colocatedHttpMs: roundSummary(t.colocated.http, 4),
    wakeupsColocated: t.colocated.wakeups,
    cpuUsColocated: t.colocated.cpuUs,
  };
}
