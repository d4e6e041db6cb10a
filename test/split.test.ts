import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { ROOT, startServer, waitFor, type RunningServer } from "./harness.ts";

const CONFIG = join(ROOT, "test/fixtures/split-config.yaml");

interface Outcome {
  /** HTTP status, or 0 when the request failed without one. */
  status: number;
  variant: string | null;
  body: string;
  ms: number;
  startedAt: number;
}

async function request(url: string, headers: Record<string, string> = {}): Promise<Outcome> {
  const startedAt = performance.now();
  try {
    const res = await fetch(url, { headers });
    const body = await res.text();
    return { status: res.status, variant: res.headers.get("x-serve-variant"), body, ms: performance.now() - startedAt, startedAt };
  } catch (e) {
    return { status: 0, variant: null, body: String(e), ms: performance.now() - startedAt, startedAt };
  }
}

/** `total` GETs from `concurrency` workers; every outcome is kept. */
async function load(url: string, total: number, concurrency: number): Promise<Outcome[]> {
  const out: Outcome[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next++ < total) out.push(await request(url));
    }),
  );
  return out;
}

const share = (xs: Outcome[], variant: string) => xs.filter((x) => x.variant === variant).length / xs.length;
const failures = (xs: Outcome[]) => xs.filter((x) => x.status !== 200).map((x) => `${x.status} ${x.body.slice(0, 200)}`);

describe("traffic split between applications on one route", () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startServer(CONFIG);
  });
  afterAll(async () => {
    expect(await server?.stop()).toBe(0);
  });

  it("sends 70/30 of 2,000 requests to a and b within statistical error, each answer naming its variant", async () => {
    const out = await load(`${server.url}/classify`, 2000, 16);
    expect(out).toHaveLength(2000);
    expect(failures(out)).toEqual([]);
    for (const o of out) expect(o.body).toBe(o.variant);
    const a = share(out, "a");
    console.log(`split 70/30 over 2,000 requests at concurrency 16: a ${(a * 100).toFixed(1)}%, b ${((1 - a) * 100).toFixed(1)}%`);
    // ± 3.5 points is about 3.4 standard deviations of a 70% share over 2,000 draws.
    expect(a).toBeGreaterThanOrEqual(0.665);
    expect(a).toBeLessThanOrEqual(0.735);
    expect(share(out, "b")).toBeCloseTo(1 - a, 10);
  });

  it("keeps each sticky key on one variant, while different keys spread over both", async () => {
    const keys = Array.from({ length: 40 }, (_, i) => `user-${i}`);
    const seen = new Map<string, Set<string | null>>();
    await Promise.all(
      keys.map(async (key) => {
        for (let i = 0; i < 5; i++) {
          const o = await request(`${server.url}/sticky`, { "x-user-id": key });
          expect(o.status).toBe(200);
          seen.set(key, (seen.get(key) ?? new Set()).add(o.variant));
        }
      }),
    );
    for (const [key, variants] of seen) expect({ key, variants: [...variants] }).toEqual({ key, variants: [expect.stringMatching(/^[ab]$/)] });
    const firsts = new Set([...seen.values()].map((v) => [...v][0]));
    expect(firsts).toEqual(new Set(["a", "b"]));
  });

  it("hides a shadow application that fails every copy: callers get the primary's answers, all 200, at the primary's pace", async () => {
    const before = await shadowCopies(server);
    const out = await load(`${server.url}/shadowed`, 400, 16);
    expect(failures(out)).toEqual([]);
    expect(new Set(out.map((o) => `${o.variant}:${o.body}`))).toEqual(new Set(["a:a"]));
    const ms = out.map((o) => o.ms).sort((x, y) => x - y);
    console.log(`with a shadow that fails after 3 s: caller latency p50 ${ms[ms.length >> 1]!.toFixed(1)} ms, max ${ms.at(-1)!.toFixed(1)} ms`);
    // Every copy costs the shadow 3 s; a caller that waited for it would take at least that.
    expect(ms.filter((x) => x >= 3000)).toEqual([]);
    // The shadow did get copies (those beyond its capacity are dropped, not queued).
    await waitFor(async () => (await shadowCopies(server)) > before, "the shadow to count copies");
  });

  it("moves all traffic to b with a PATCH of the split under steady load, failing no request", async () => {
    const out: Outcome[] = [];
    let stop = false;
    const workers = Array.from({ length: 16 }, async () => {
      while (!stop) out.push(await request(`${server.url}/classify`));
    });
    await waitFor(() => out.length >= 300, "300 answers before the PATCH");
    const patchStarted = performance.now();
    const res = await fetch(`${server.adminUrl}/api/routes`, {
      method: "PATCH",
      body: JSON.stringify({ routePrefix: "/classify", split: { a: 0, b: 100 } }),
      headers: { "content-type": "application/json" },
    });
    const patched = performance.now();
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ routes: expect.arrayContaining([{ routePrefix: "/classify", split: { a: 0, b: 100 } }]) });
    await waitFor(() => out.filter((o) => o.startedAt > patched).length >= 500, "500 answers started after the PATCH");
    stop = true;
    await Promise.all(workers);

    const before = out.filter((o) => o.startedAt + o.ms < patchStarted);
    const after = out.filter((o) => o.startedAt > patched);
    console.log(`PATCH 70/30 → 0/100 under load: ${out.length} requests, ${failures(out).length} failed; a's share ${(share(before, "a") * 100).toFixed(1)}% before, ${(share(after, "a") * 100).toFixed(1)}% after`);
    expect(failures(out)).toEqual([]);
    expect(share(before, "a")).toBeGreaterThan(0.5);
    expect(share(after, "b")).toBe(1);
    expect(await (await fetch(`${server.url}/-/routes`)).json()).toMatchObject({ "/classify": { split: { a: 0, b: 100 } } });
  });

  it("refuses a split naming an unknown application and keeps the current one", async () => {
    const res = await fetch(`${server.adminUrl}/api/routes`, {
      method: "PATCH",
      body: JSON.stringify({ routePrefix: "/classify", split: { a: 50, c: 50 } }),
      headers: { "content-type": "application/json" },
    });
    expect(res.status).toBe(422);
    expect(await res.json()).toMatchObject({ error: "invalid", issues: [{ path: ["routes", 0, "split", "c"] }] });
    expect(await (await fetch(`${server.url}/-/routes`)).json()).toMatchObject({ "/classify": { split: { a: 0, b: 100 } } });
  });
});

async function shadowCopies(server: RunningServer): Promise<number> {
  const res = await fetch(`${server.url}/shadow`);
  return ((await res.json()) as { copies: number }).copies;
}
