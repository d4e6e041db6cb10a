/**
 * The admin API (SPEC section 4) against a real Server running the REP
 * diamond with real replica processes, and the CLI commands that talk to it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { parseConfig } from "../src/config/schema.ts";
import { startAdmin } from "../src/http/admin.ts";
import { Server } from "../src/http/server.ts";
import type { StatusJSON } from "../src/runtime/control/status.ts";
import { EXAMPLES, alive, runCli, tempDir, waitFor, type TempDir } from "./harness.ts";

const DIAMOND = join(EXAMPLES, "diamond");
const TOKEN = "t0k";
const CONFIG = { applications: [{ name: "diamond", importPath: "./graph.ts" }] };

let server: Server;
let admin: ReturnType<typeof startAdmin>;
let shutdowns = 0;
let tmp: TempDir;
/** Every replica pid ever seen, to check that none outlives the server. */
const seenPids = new Set<number>();

function api(path: string, init: RequestInit & { token?: string | null } = {}): Promise<Response> {
  const { token = TOKEN, ...rest } = init;
  const headers = new Headers(rest.headers);
  if (token !== null) headers.set("authorization", `Bearer ${token}`);
  return fetch(`${admin.url}${path}`, { ...rest, headers });
}

function send(method: string, path: string, body: unknown, token: string | null = TOKEN): Promise<Response> {
  return api(path, { method, body: typeof body === "string" ? body : JSON.stringify(body), headers: { "content-type": "application/json" }, token });
}

async function status(): Promise<StatusJSON> {
  const s = (await (await api("/api/applications")).json()) as StatusJSON;
  for (const a of Object.values(s.applications)) for (const d of Object.values(a.deployments)) for (const r of d.replicas) seenPids.add(r.pid);
  return s;
}

/** Pids per deployment, sorted: what "nothing was touched" compares. */
async function pids(): Promise<Record<string, number[]>> {
  const s = await status();
  return Object.fromEntries(Object.entries(s.applications.diamond!.deployments).map(([n, d]) => [n, d.replicas.map((r) => r.pid).sort()]));
}

/** A status once every deployment has its target of RUNNING replicas and no other. */
async function settled(): Promise<StatusJSON> {
  return waitFor(async () => {
    const s = await status();
    const app = s.applications.diamond;
    const done = app?.status === "RUNNING" && Object.values(app.deployments).every((d) => d.replicas.length === d.targetReplicas && d.replicas.every((r) => r.state === "RUNNING"));
    return done ? s : null;
  }, "the diamond to settle", 30_000);
}

const replica = (id: string) => ({ id, pid: expect.any(Number), state: "RUNNING", restarts: 0 });
const healthy = (...ids: string[]) => ({ status: "HEALTHY", message: "", targetReplicas: ids.length, restarts: 0, backoffS: 0, replicas: ids.map(replica) });

beforeAll(async () => {
  tmp = tempDir("sb-admin-");
  const parsed = parseConfig({ proxy: { port: 0, host: "127.0.0.1" }, ...CONFIG });
  if (!parsed.ok) throw new Error(JSON.stringify(parsed.issues));
  server = await Server.start({ config: parsed.value, baseDir: DIAMOND, appDir: DIAMOND });
  await server.apply(parsed.value);
  admin = startAdmin(server, { host: "127.0.0.1", port: 0, token: TOKEN, onShutdown: () => void shutdowns++, errorDetail: "full" });
});

afterAll(async () => {
  await admin?.stop();
  await server?.stop();
  await tmp?.[Symbol.asyncDispose]();
  // No replica outlives the server.
  await waitFor(() => [...seenPids].every((p) => !alive(p)), "every replica to exit", 10_000);
});

describe("the admin API", () => {
  it("answers 401 without the token or with a wrong one, and changes nothing", async () => {
    for (const token of [null, "wrong", "t0k-but-longer"]) {
      const res = await send("PATCH", "/api/applications/diamond/deployments/Model", { numReplicas: 3 }, token);
      expect(res.status).toBe(401);
      expect(res.headers.get("www-authenticate")).toBe('Bearer realm="serve-bin"');
      expect(await res.json()).toEqual({
        error: "unauthorized",
        message: expect.stringContaining("send Authorization: Bearer <token> (the server's --admin-token-file / SERVE_BIN_ADMIN_TOKEN)"),
      });
    }
    expect((await api("/api/applications", { token: null })).status).toBe(401);
    expect((await api("/metrics", { token: "nope" })).status).toBe(401);
    expect((await api("/api/shutdown", { method: "POST", token: null })).status).toBe(401);
    expect((await status()).applications.diamond!.deployments.Model!.targetReplicas).toBe(1);
    expect(shutdowns).toBe(0);
  });

  it("answers GET /api/applications with the status in Ray's state names", async () => {
    expect(await settled()).toEqual({
      applications: {
        diamond: {
          status: "RUNNING",
          message: "",
          routePrefix: "/",
          deployments: {
            Model: healthy("Model#0"),
            Model_1: healthy("Model_1#0"),
            ensemble: healthy("ensemble#0"),
            DAGDriver: healthy("DAGDriver#0"),
          },
        },
      },
    });
  });

  it("answers GET /api/config with the applied config, as JSON or as YAML", async () => {
    const json = (await (await api("/api/config")).json()) as { applications: { name: string; importPath: string; deployments: { name: string; numReplicas: number }[] }[] };
    expect(json.applications.map((a) => [a.name, a.importPath, a.deployments.map((d) => [d.name, d.numReplicas])])).toEqual([
      ["diamond", "./graph.ts", [["Model", 1], ["Model_1", 1], ["ensemble", 1], ["DAGDriver", 1]]],
    ]);
    const res = await api("/api/config", { headers: { accept: "application/yaml" } });
    expect(res.headers.get("content-type")).toMatch(/^application\/yaml/);
    const yaml = await res.text();
    expect(yaml).toContain("applications:\n  - name: diamond\n");
    expect(yaml).toContain("      - name: Model\n        numReplicas: 1\n");
  });

  it("scales Model from 1 to 2 replicas with a PATCH and lists both live pids", async () => {
    const before = await pids();
    const res = await send("PATCH", "/api/applications/diamond/deployments/Model", { numReplicas: 2 });
    expect(res.status).toBe(200);
    const entry = (await res.json()) as StatusJSON["applications"][string]["deployments"][string];
    expect(entry).toEqual(healthy("Model#0", "Model#1"));
    const [p0, p1] = entry.replicas.map((r) => r.pid);
    expect(p0).toBe(before.Model![0]);
    expect(p1).not.toBe(p0);
    expect(alive(p0!) && alive(p1!)).toBe(true);
    expect((await status()).applications.diamond!.deployments.Model).toEqual(entry);
    // The other deployments were not touched, and the graph still answers.
    const after = await pids();
    expect({ ...after, Model: undefined }).toEqual({ ...before, Model: undefined });
    const answer = await fetch(`${server.url}/`, { method: "POST", body: "[1,2,3]" });
    expect(await answer.json()).toBe(8);
  });

  it("refuses an invalid PATCH body with 422 and zod's issue paths, and changes nothing", async () => {
    const before = await status();
    const res = await send("PATCH", "/api/applications/diamond/deployments/Model", { numReplicas: -1, name: "Other", bogus: true });
    expect(res.status).toBe(422);
    const body = (await res.json()) as { error: string; message: string; issues: { path: unknown[]; message: string }[] };
    expect(body.error).toBe("invalid");
    expect(body.message).toMatch(/^the patch is invalid; nothing was changed:\n/);
    expect(body.issues.map((i) => i.path).sort()).toEqual([["bogus"], ["name"], ["numReplicas"]]);
    expect(await status()).toEqual(before);
  });

  it("answers 400 to a body that is not JSON", async () => {
    const res = await send("PATCH", "/api/applications/diamond/deployments/Model", "{numReplicas: 2");
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error: "bad_request", message: expect.stringContaining("the body is not valid JSON") });
  });

  it("answers 404 for an unknown application or deployment, naming the ones there are", async () => {
    const app = await send("PATCH", "/api/applications/nope/deployments/Model", { numReplicas: 2 });
    expect(app.status).toBe(404);
    expect(await app.json()).toEqual({ error: "not_found", message: 'no application "nope"; applications: diamond' });
    const dep = await send("PATCH", "/api/applications/diamond/deployments/Nope", { numReplicas: 2 });
    expect(dep.status).toBe(404);
    expect(await dep.json()).toEqual({ error: "not_found", message: 'application diamond has no deployment "Nope"; it has Model, Model_1, ensemble, DAGDriver' });
    expect((await api("/api/applications/nope", { method: "DELETE" })).status).toBe(404);
  });

  it("applies a whole config with PUT; the same config again touches nothing, as JSON or YAML", async () => {
    // The config leaves Model out, so it goes back to the code's 1 replica: declarative.
    const first = await send("PUT", "/api/applications", CONFIG);
    expect(first.status).toBe(200);
    const answer = (await first.json()) as { status: StatusJSON; needsRestart: string[] };
    expect(answer.needsRestart).toEqual([]);
    expect(answer.status.applications.diamond!.status).toBe("RUNNING");
    await settled(); // the second Model replica has drained away
    const once = await pids();
    expect(once.Model).toHaveLength(1);

    const again = await send("PUT", "/api/applications", CONFIG);
    expect(again.status).toBe(200);
    expect(await pids()).toEqual(once);

    const yaml = await api("/api/applications", {
      method: "PUT",
      headers: { "content-type": "application/yaml" },
      body: "applications:\n  - name: diamond\n    importPath: ./graph.ts\n",
    });
    expect(yaml.status).toBe(200);
    expect(await pids()).toEqual(once);
  });

  it("refuses an invalid config with 422 and issue paths, YAML ones with the line, and changes nothing", async () => {
    const before = await pids();
    const res = await send("PUT", "/api/applications", { applications: [{ name: "diamond", importPath: "./graph.py", deployments: [{ name: "Model", numReplicas: "two" }] }] });
    expect(res.status).toBe(422);
    const body = (await res.json()) as { error: string; issues: { path: unknown[] }[] };
    expect(body.error).toBe("invalid");
    expect(body.issues.map((i) => i.path)).toEqual([
      ["applications", 0, "importPath"],
      ["applications", 0, "deployments", 0, "numReplicas"],
    ]);
    const yaml = await api("/api/applications", { method: "PUT", headers: { "content-type": "text/yaml" }, body: "applications:\n  - name: diamond\n    importPath: 7\n" });
    expect(yaml.status).toBe(422);
    expect(((await yaml.json()) as { issues: { message: string }[] }).issues[0]!.message).toContain("(request body:3:17)");
    const outside = await send("PUT", "/api/applications", { applications: [{ name: "diamond", importPath: "../tutorial/graph.ts" }] });
    expect(outside.status).toBe(422);
    expect(await pids()).toEqual(before);
  });

  it("answers 202 at once with ?wait=false and gets there afterwards", async () => {
    const res = await send("PUT", "/api/applications?wait=false", { applications: [{ ...CONFIG.applications[0], deployments: [{ name: "Model_1", numReplicas: 2 }] }] });
    expect(res.status).toBe(202);
    const s = await settled();
    expect(s.applications.diamond!.deployments.Model_1).toEqual(healthy("Model_1#0", "Model_1#1"));
  });

  it("changes a route's split with PATCH /api/routes, and refuses a split over an unknown application", async () => {
    const res = await send("PATCH", "/api/routes", { routePrefix: "/ab", split: { diamond: 100 } });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ routes: [{ routePrefix: "/ab", split: { diamond: 100 } }] });
    const answer = await fetch(`${server.url}/ab`, { method: "POST", body: "[1,2,3]" });
    expect(await answer.json()).toBe(8);

    const bad = await send("PATCH", "/api/routes", { routePrefix: "/ab", split: { nope: 1 } });
    expect(bad.status).toBe(422);
    expect(((await bad.json()) as { error: string }).error).toBe("invalid");
    const shape = await send("PATCH", "/api/routes", { routePrefix: "ab", split: "all" });
    expect(shape.status).toBe(422);
    expect(((await shape.json()) as { issues: { path: unknown[] }[] }).issues.map((i) => i.path)).toEqual([["routePrefix"], ["split"]]);
  });

  it("serves Prometheus gauges of replicas by state, targets and restarts", async () => {
    const res = await api("/metrics");
    expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    const lines = (await res.text()).split("\n");
    expect(lines).toEqual(
      expect.arrayContaining([
        "# TYPE serve_bin_up gauge",
        "serve_bin_up 1",
        "# TYPE serve_bin_replicas gauge",
        'serve_bin_replicas{app="diamond",deployment="Model_1",state="RUNNING"} 2',
        'serve_bin_replicas{app="diamond",deployment="Model",state="STARTING"} 0',
        "# TYPE serve_bin_target_replicas gauge",
        'serve_bin_target_replicas{app="diamond",deployment="Model_1"} 2',
        'serve_bin_target_replicas{app="diamond",deployment="DAGDriver"} 1',
        "# TYPE serve_bin_replica_restarts_total counter",
        'serve_bin_replica_restarts_total{app="diamond",deployment="Model"} 0',
        'serve_bin_application_status{app="diamond",status="RUNNING"} 1',
      ]),
    );
  });

  it("counts the proxy's requests by application and status, with a latency histogram and shared-memory counters", async () => {
    expect((await fetch(`${server.url}/`, { method: "POST", body: "[1,2,3]" })).status).toBe(200);
    expect((await fetch(`${server.url}/`, { method: "POST", body: "[1,2," })).status).toBe(400);
    const text = await (await api("/metrics")).text();
    const sample = (name: string) => Number(new RegExp(`^${name.replace(/[{}"=,+.]/g, "\\$&")} (\\S+)$`, "m").exec(text)?.[1] ?? NaN);
    expect(sample('serve_bin_http_requests_total{app="diamond",code="200"}')).toBeGreaterThanOrEqual(1);
    expect(sample('serve_bin_http_requests_total{app="diamond",code="400"}')).toBeGreaterThanOrEqual(1);
    const count = sample('serve_bin_http_request_duration_seconds_count{app="diamond"}');
    expect(count).toBeGreaterThanOrEqual(2);
    expect(sample('serve_bin_http_request_duration_seconds_bucket{app="diamond",le="+Inf"}')).toBe(count);
    expect(sample('serve_bin_http_request_duration_seconds_sum{app="diamond"}')).toBeGreaterThan(0);
    expect(text.split("\n")).toEqual(
      expect.arrayContaining([
        "# TYPE serve_bin_http_requests_total counter",
        "# TYPE serve_bin_http_request_duration_seconds histogram",
        "# TYPE serve_bin_shm_transfers_total counter",
        "# TYPE serve_bin_shm_fallbacks_total counter",
      ]),
    );
    expect(sample('serve_bin_shm_fallbacks_total{process="server"}')).toBe(0);
  });

  it("answers an unknown path with 404 and the list of endpoints", async () => {
    const res = await api("/api/nothing");
    expect(res.status).toBe(404);
    const body = (await res.json()) as { error: string; message: string };
    expect(body.error).toBe("not_found");
    expect(body.message).toContain("PATCH /api/applications/:app/deployments/:name");
  });
});

describe("the CLI against the admin API", () => {
  // The token from a file: --admin-token would print a warning (it shows in ps).
  const flags = () => {
    const file = join(tmp.path, "token");
    writeFileSync(file, `${TOKEN}\n`, { mode: 0o600 });
    return ["--address", admin.url, "--admin-token-file", file];
  };

  it("prints the status as a table, and as JSON with --json", async () => {
    const table = await runCli(["status", ...flags()]);
    expect(table.stderr).toBe("");
    expect(table.code).toBe(0);
    expect(table.stdout.split("\n").map((l) => l.split(/\s+/).filter(Boolean))).toEqual([
      ["APPLICATION", "STATUS", "ROUTE", "DEPLOYMENT", "STATUS", "REPLICAS", "RESTARTS"],
      ["diamond", "RUNNING", "/", "Model", "HEALTHY", "1/1", "0"],
      ["Model_1", "HEALTHY", "2/2", "0"],
      ["ensemble", "HEALTHY", "1/1", "0"],
      ["DAGDriver", "HEALTHY", "1/1", "0"],
      [],
    ]);
    const json = await runCli(["status", "--json", ...flags()]);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual(await status());
  });

  it("prints the applied config as YAML", async () => {
    const r = await runCli(["config", ...flags()]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("      - name: Model_1\n        numReplicas: 2\n");
  });

  it("exits 2 for a wrong token, and 1 with what to do when no server answers", async () => {
    const wrong = await runCli(["status", "--address", admin.url], { env: { SERVE_BIN_ADMIN_TOKEN: "wrong" } });
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain("the admin token is wrong");
    const closed = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = closed.port;
    closed.stop(true);
    const none = await runCli(["status", "--address", `http://127.0.0.1:${port}`]);
    expect(none.code).toBe(1);
    expect(none.stderr).toBe(
      `serve-bin: cannot reach the serve-bin admin API at http://127.0.0.1:${port}: connection refused; is a server running? (serve-bin run / serve-bin start)\n`,
    );
  });

  it("deploy refuses an invalid file with every issue's path and exits 2, sending nothing", async () => {
    const before = await pids();
    const file = join(tmp.path, "bad.yaml");
    writeFileSync(file, "applications:\n  - name: diamond\n    importPath: ./graph.py\n    deployments:\n      - name: Model\n        numReplicas: -2\n");
    const r = await runCli(["deploy", file, ...flags()]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("applications[0].importPath:");
    expect(r.stderr).toContain("applications[0].deployments[0].numReplicas:");
    expect(await pids()).toEqual(before);
  });

  it("deploy applies a file whose importPath is relative to the file, then prints the status; exit 0", async () => {
    const file = join(tmp.path, "app.yaml");
    const importPath = relative(tmp.path, join(DIAMOND, "graph.ts"));
    writeFileSync(file, `applications:\n  - name: diamond\n    importPath: ${importPath}\n    deployments:\n      - name: Model\n        numReplicas: 2\n`);
    const r = await runCli(["deploy", file, ...flags()]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/diamond\s+RUNNING\s+\/\s+Model\s+HEALTHY\s+2\/2/);
    const s = await status();
    expect(s.applications.diamond!.deployments.Model!.targetReplicas).toBe(2);
    // Model_1 is left out of this file: back to the code's 1 replica.
    expect(s.applications.diamond!.deployments.Model_1!.targetReplicas).toBe(1);
  });

  it("deploy exits 2 with the server's reason when the server refuses the file", async () => {
    const file = join(tmp.path, "outside.yaml");
    writeFileSync(file, `applications:\n  - name: diamond\n    importPath: ${join(EXAMPLES, "tutorial", "graph.ts")}\n`);
    const r = await runCli(["deploy", file, ...flags()]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("outside the app directory");
  });

  it("schema prints the config's JSON Schema", async () => {
    const r = await runCli(["schema"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ title: "serve-bin config", type: "object" });
  });

  it("healthcheck exits 0 when /-/healthz answers 200, and 1 with the reason when nothing listens", async () => {
    const ok = await runCli(["healthcheck", "--port", String(server.port)]);
    expect(ok.code).toBe(0);
    const closed = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const port = closed.port;
    closed.stop(true);
    const down = await runCli(["healthcheck", "--port", String(port)]);
    expect(down.code).toBe(1);
    expect(down.stderr).toBe(`serve-bin healthcheck: http://127.0.0.1:${port}/-/healthz: connection refused\n`);
  });
});

describe("removing and shutting down", () => {
  it("DELETE /api/applications/:app drains and stops the application's replicas", async () => {
    const before = Object.values(await pids()).flat();
    const res = await api("/api/applications/diamond", { method: "DELETE" });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: { applications: {} } });
    await waitFor(() => before.every((p) => !alive(p)), "the diamond's replicas to exit", 15_000);
  });

  it("POST /api/shutdown answers 202, then calls onShutdown", async () => {
    const res = await api("/api/shutdown", { method: "POST", headers: { "content-type": "application/json" } });
    expect(res.status).toBe(202);
    await waitFor(() => shutdowns === 1, "onShutdown to be called", 5_000);
  });
});
