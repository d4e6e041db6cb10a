/**
 * What chain10 and ensemble10 share: one request into a served graph that
 * makes ten handle calls, measured two ways — timed inside the calling replica
 * (which answers with its per-request microseconds), against ten raw
 * ping-pongs to an echo process made the same way (in a row, or at once); and
 * from an HTTP client (sequential POSTs over one kept-alive connection),
 * against the same client's POSTs to a bare Bun.serve. While the HTTP client
 * runs, every serve-bin process's wake-ups are counted. The same HTTP client
 * also measures the graph served with its ten callees colocated.
 */
import { join } from "node:path";
import { BUN, FIXTURES, LIB } from "./paths.ts";
import { startRawPeer, type RawPeer } from "./raw-client.ts";
import type { Ctx } from "./scenario.ts";
import { startServeBin } from "./server.ts";
import { processesOf } from "./http-compare.ts";
import { summarize } from "./stats.ts";
import { WakeupMeter } from "./wakeups.ts";

export interface TenCalls {
  /** Timed inside the driver replica, ms. */
  served: ReturnType<typeof summarize>;
  raw: ReturnType<typeof summarize>;
  /** Sequential POSTs from the bench process, ms. */
  http: ReturnType<typeof summarize>;
  /** The same POSTs to a bare Bun.serve, ms. */
  httpBare: ReturnType<typeof summarize>;
  /** Wake-ups per HTTP request, by process (main = the proxy). */
  wakeupsPerRequest: Record<string, number>;
  /** The same POSTs to the same graph served with its ten callees colocated (bench/fixtures/<name>-colocated.yaml), ms. */
  httpColocated: ReturnType<typeof summarize>;
  /** Wake-ups per HTTP request of that server's processes. */
  wakeupsColocated: Record<string, number>;
  n: number;
  rounds: number;
}

/** POSTs `body` once over the client's kept-alive connection; throws unless 200. */
async function post(url: string, body: string): Promise<void> {
  const res = await fetch(url, { method: "POST", body, headers: { "content-type": "application/json" } });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`POST ${url} answered ${res.status}: ${text.slice(0, 300)}`);
}

export async function measureTenCalls(ctx: Ctx, name: string, tenRaw: (client: RawPeer["client"], i: number) => Promise<unknown>): Promise<TenCalls> {
  const rounds = ctx.quick ? 2 : 10;
  const perRound = ctx.quick ? 50 : 200;
  const server = await startServeBin(ctx.procs, join(FIXTURES, `${name}.ts`));
  const colocated = await startServeBin(ctx.procs, join(FIXTURES, `${name}-colocated.yaml`));
  const peer = await startRawPeer(ctx.procs);
  const bare = ctx.procs.spawn("bare Bun.serve", [BUN, join(LIB, "bare-server.ts")]);
  const us: number[] = [];
  const rawUs: number[] = [];
  const httpMs: number[] = [];
  const bareMs: number[] = [];
  const colocatedMs: number[] = [];
  try {
    const bareUrl = (await bare.waitFor(/listening on (http:\/\/\S+)/, 10_000))[1]!;
    const wakeups = new WakeupMeter(await processesOf(server));
    const colocatedWakeups = new WakeupMeter(await processesOf(colocated));
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
        const res = await fetch(server.url, { method: "POST", body: JSON.stringify({ n: perRound }), headers: { "content-type": "application/json" } });
        us.push(...((await res.json()) as number[]));
      },
      async () => {
        for (let i = 0; i < perRound; i++) {
          const t0 = performance.now();
          await tenRaw(peer.client, i);
          rawUs.push((performance.now() - t0) * 1000);
        }
      },
      () => wakeups.measure(() => timeHttp(server.url, httpMs)),
      () => timeHttp(bareUrl, bareMs),
      () => colocatedWakeups.measure(() => timeHttp(colocated.url, colocatedMs)),
    ];
    // Warm every side (JIT, connections) before anything counts.
    await post(server.url, JSON.stringify({ n: 100 }));
    for (let i = 0; i < 200; i++) await peer.client.call(i);
    for (let i = 0; i < 100; i++) await post(server.url, JSON.stringify({ x: i }));
    for (let i = 0; i < 100; i++) await post(bareUrl, JSON.stringify({ x: i }));
    for (let i = 0; i < 100; i++) await post(colocated.url, JSON.stringify({ x: i }));
    ctx.log(`${name}: ${rounds} rounds of ${perRound} requests per side (in the driver, raw ping-pongs, over HTTP, bare Bun.serve over HTTP, over HTTP with the callees colocated; the order rotates)`);
    for (let r = 0; r < rounds; r++) for (let k = 0; k < sides.length; k++) await sides[(r + k) % sides.length]!();
    return {
      served: summarize(us.map((v) => v / 1000)),
      raw: summarize(rawUs.map((v) => v / 1000)),
      http: summarize(httpMs),
      httpBare: summarize(bareMs),
      wakeupsPerRequest: wakeups.perUnit(httpMs.length),
      httpColocated: summarize(colocatedMs),
      wakeupsColocated: colocatedWakeups.perUnit(colocatedMs.length),
      n: us.length,
      rounds,
    };
  } finally {
    await bare.stop();
    await peer.close();
    await colocated.stop();
    await server.stop();
  }
}
