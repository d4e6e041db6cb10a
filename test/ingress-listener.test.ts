/**
 * proxy.location "ingress": each ingress replica listens on the
 * data-plane port itself (SO_REUSEPORT), so a request reaches its graph
 * without a hop through the main process. Which process took a request is
 * read from its x-request-id: a listener mints the id with its own pid.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { readFileSync, writeFileSync } from "node:fs";
import { ROOT, startServer, stopCleanly, tempDir, waitFor, type RunningServer } from "./harness.ts";
import { startLoad, why } from "./load.ts";

const CONFIG = join(ROOT, "test/fixtures/ingress-apps.yaml");

interface Answer {
  status: number;
  /** The pid of the process whose listener took the request (0: no answer). */
  listener: number;
  body: { app?: string; pid?: number; copies?: number };
  variant: string | null;
  error?: string;
}

/** One GET; `fresh` opens a new connection for it (so the kernel picks a listener again). */
async function get(url: string, opts: { fresh?: boolean; headers?: Record<string, string> } = {}): Promise<Answer> {
  try {
    const res = await fetch(url, { headers: { ...opts.headers, ...(opts.fresh && { connection: "close" }) } });
    const text = await res.text();
    let body = {};
    try {
      body = JSON.parse(text);
    } catch {}
    const id = res.headers.get("x-request-id");
    return { status: res.status, listener: id ? parseInt(id.split("-")[0]!, 36) : 0, body, variant: res.headers.get("x-serve-variant") };
  } catch (e) {
    return { status: 0, listener: 0, body: {}, variant: null, error: String(e) };
  }
}

/** Sockets listening on `port` now, any address (each listener sharing it with SO_REUSEPORT is one). */
function listenersOn(port: number): number {
  const hex = port.toString(16).toUpperCase().padStart(4, "0");
  return readFileSync("/proc/net/tcp", "utf8")
    .split("\n")
    .filter((l) => {
      const f = l.trim().split(/\s+/);
      return f[1]?.endsWith(`:${hex}`) && f[3] === "0A"; // 0A: LISTEN
    }).length;
}

/** The pids of each application's ingress replicas now. */
async function ingressPids(server: RunningServer): Promise<Record<string, number[]>> {
  const status = (await (await fetch(`${server.adminUrl}/api/applications`)).json()) as {
    applications: Record<string, { deployments: Record<string, { replicas: { pid: number; state: string }[] }> }>;
  };
  const out: Record<string, number[]> = {};
  for (const [app, a] of Object.entries(status.applications)) {
    out[app] = Object.values(a.deployments).flatMap((d) => d.replicas.filter((r) => r.state === "RUNNING").map((r) => r.pid));
  }
  return out;
}

async function patch(server: RunningServer, app: string, deployment: string, body: unknown): Promise<Response> {
  return fetch(`${server.adminUrl}/api/applications/${app}/deployments/${deployment}`, { method: "PATCH", body: JSON.stringify(body), headers: { "content-type": "application/json" } });
}

async function requestsTotal(server: RunningServer, app: string): Promise<number> {
  const text = await (await fetch(`${server.adminUrl}/metrics`)).text();
  const m = new RegExp(`^serve_bin_http_requests_total\\{app="${app}",code="200"\\} (\\d+)$`, "m").exec(text);
  return m ? Number(m[1]) : 0;
}

describe("ingress replicas listen on the data-plane port (proxy.location ingress)", () => {
  let server: RunningServer;
  let main: number;
  const handover: Answer[] = [];

  beforeAll(async () => {
    // Load from the moment the port opens: the main process takes the first requests, then hands over.
    server = await startServer(CONFIG, { waitReady: false });
    main = server.proc.pid;
    let stop = false;
    const loops = Array.from({ length: 4 }, async () => {
      while (!stop) {
        const x = await get(`${server.url}/a`);
        handover.push(x);
        if (x.status === 404) await Bun.sleep(5); // not routed yet (still planning): paced, not spinning
      }
    });
    await waitFor(() => /ready in \d+ ms/.test(server.output()), "the applications to be ready");
    await waitFor(() => handover.filter((x) => x.listener !== main && x.status === 200).length >= 50, "50 answers from ingress listeners");
    stop = true;
    await Promise.all(loops);
    // The main process closes its listener a moment after the first ingress listener opens: three listeners left.
    await waitFor(() => listenersOn(Number(new URL(server.url).port)) === 3, "the main process to stop listening");
  });
  afterAll(async () => {
    if (server) await stopCleanly(server);
  });

  it("keeps serving across the hand-over from the main process to the ingress listeners: every request answered 200", () => {
    // Until the application is planned the main process answers 404 (no route yet); from its first 200 on, every answer is 200.
    const routed = handover.findIndex((x) => x.status === 200);
    expect(handover.slice(0, routed).filter((x) => x.status !== 404)).toEqual([]);
    const bad = handover.slice(routed).filter((x) => x.status !== 200).map((x) => `${x.status} ${x.error ?? JSON.stringify(x.body)}`);
    expect(bad).toEqual([]);
    const byMain = handover.slice(routed).filter((x) => x.listener === main).length;
    console.log(`hand-over under load: ${handover.length - routed} requests once routed, ${byMain} answered by the main process, the rest by ingress listeners, 0 failed`);
    expect(byMain).toBeGreaterThan(0);
    // Then the ingress listeners take everything (a connection the main process was answering on may carry a few more first).
    expect(handover.slice(-20).filter((x) => x.listener === main)).toEqual([]);
  });

  it("answers from an ingress replica's own listener, not through the main process", async () => {
    const pids = await ingressPids(server);
    const listeners = new Set(Object.values(pids).flat());
    const out = await Promise.all(Array.from({ length: 30 }, () => get(`${server.url}/a`, { fresh: true })));
    for (const x of out) {
      expect(x.status).toBe(200);
      expect(x.body).toEqual({ app: "a", pid: pids.a![0] });
      expect(listeners.has(x.listener)).toBe(true);
    }
    // With a's own listener, the request ran in the process that accepted it.
    expect(out.some((x) => x.listener === pids.a![0])).toBe(true);
  });

  it("routes a request for another application arriving at a's listener to that application's ingress", async () => {
    const pids = await ingressPids(server);
    const out: Answer[] = [];
    await waitFor(async () => {
      out.push(await get(`${server.url}/b`, { fresh: true }));
      return out.some((x) => x.listener === pids.a![0]);
    }, "a request for b taken by a's listener");
    for (const x of out) expect(x.body).toEqual({ app: "b", pid: pids.b![0] });
  });

  it("splits, sticks and shadows through the ingress listeners", async () => {
    const pids = await ingressPids(server);
    const replicaListeners = new Set(Object.values(pids).flat());
    for (const user of ["u1", "u2", "u3", "u4", "u5", "u6"]) {
      const answers = await Promise.all(Array.from({ length: 6 }, () => get(`${server.url}/sticky`, { fresh: true, headers: { "x-user": user } })));
      for (const x of answers) {
        expect(replicaListeners.has(x.listener)).toBe(true);
        expect(x.variant).toBe(x.body.app!);
      }
      expect(new Set(answers.map((x) => x.variant)).size).toBe(1); // one key, one variant, whichever listener took it
    }
    const before = (await get(`${server.url}/c`)).body.copies!;
    const shadowed = await Promise.all(Array.from({ length: 10 }, () => get(`${server.url}/shadowed`, { fresh: true })));
    for (const x of shadowed) {
      expect(x.status).toBe(200);
      expect(x.body.app).toBe("a");
      expect(replicaListeners.has(x.listener)).toBe(true);
    }
    await waitFor(async () => (await get(`${server.url}/c`)).body.copies! >= before + 10, "c to get the 10 shadow copies");
  });

  it("counts the requests the ingress listeners answered in /metrics", async () => {
    const before = await requestsTotal(server, "c");
    const out = await Promise.all(Array.from({ length: 20 }, () => get(`${server.url}/c`, { fresh: true })));
    expect(out.every((x) => x.status === 200 && x.listener !== main)).toBe(true);
    await waitFor(async () => (await requestsTotal(server, "c")) >= before + 20, "/metrics to count the 20 requests");
  });

  it("scales a's ingress 1 → 2 → 1 under load without failing a request", async () => {
    const load = startLoad({ url: `${server.url}/a`, loops: 4, pauseMs: 2 });
    await load.until((r) => r.ok >= 20, "20 answers");
    expect((await patch(server, "a", "Who", { numReplicas: 2 })).status).toBe(200);
    const port = Number(new URL(server.url).port);
    await waitFor(async () => (await ingressPids(server)).a!.length === 2, "two ingress replicas of a");
    await waitFor(() => listenersOn(port) === 4, "the new replica's listener to open");
    const two = (await ingressPids(server)).a!;
    await waitFor(async () => two.includes((await get(`${server.url}/c`, { fresh: true })).listener) && two.includes((await get(`${server.url}/a`, { fresh: true })).listener), "a's listeners to take requests");
    const mid = load.current.ok;
    await load.until((r) => r.ok >= mid + 20, "20 more answers");
    expect((await patch(server, "a", "Who", { numReplicas: 1 })).status).toBe(200);
    await waitFor(async () => (await ingressPids(server)).a!.length === 1, "one ingress replica of a");
    await waitFor(() => listenersOn(port) === 3, "the leaving replica's listener to close");
    const end = load.current.ok;
    await load.until((r) => r.ok >= end + 20, "20 answers after the scale-down");
    const result = await load.stop();
    console.log(`a's ingress 1 → 2 → 1 under load: ${result.ok} answered, ${result.failed} failed`);
    expect(result.failed, why(result)).toBe(0);
  });

  it("takes the port back when every ingress replica is killed (kill -9), then hands it over again", async () => {
    const pids = await ingressPids(server);
    const all = Object.values(pids).flat();
    for (const p of all) process.kill(p, "SIGKILL");
    // The main process listens again: a request gets an HTTP answer from it (once a's ingress is back), not a refused connection.
    const byMain = await waitFor(async () => {
      const x = await get(`${server.url}/a`, { fresh: true });
      return x.listener === main ? x : null;
    }, "the main process to answer on the data-plane port");
    expect(byMain.status).toBe(200);
    // Restarted replicas open their listeners; the main process steps aside again.
    await waitFor(async () => {
      const now = Object.values(await ingressPids(server)).flat();
      return now.length === all.length && now.every((p) => !all.includes(p));
    }, "every ingress replica to be restarted");
    const back = await waitFor(async () => {
      const xs = await Promise.all(Array.from({ length: 10 }, () => get(`${server.url}/a`, { fresh: true })));
      return xs.every((x) => x.status === 200 && x.listener !== main) ? xs : null;
    }, "the restarted ingress listeners to take every request");
    expect(back).toHaveLength(10);
  });
});

describe('proxy.location "main" (the default)', () => {
  it("relays every request through the main process, as before", async () => {
    await using dir = tempDir("sb-ingress-main-");
    const config = join(dir.path, "serve.yaml");
    writeFileSync(config, `applications:\n  - name: a\n    routePrefix: /a\n    importPath: ${join(ROOT, "test/fixtures/ingress-apps.ts")}:a\n`);
    const server = await startServer(config, { args: ["--app-dir", ROOT] });
    try {
      const pids = await ingressPids(server);
      const out = await Promise.all(Array.from({ length: 10 }, () => get(`${server.url}/a`, { fresh: true })));
      for (const x of out) {
        expect(x.status).toBe(200);
        expect(x.listener).toBe(server.proc.pid);
        expect(x.body).toEqual({ app: "a", pid: pids.a![0] });
      }
    } finally {
      await stopCleanly(server);
    }
  });
});
