/**
 * Per-deployment and per-replica metrics on the admin /metrics (SPEC §10),
 * from the compiled binary: requests sent through real graphs, then each
 * series checked by name and label against what was sent.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import type { StatusJSON } from "../src/runtime/control/status.ts";
import { EXAMPLES, ROOT, startServer, waitFor, type RunningServer } from "./harness.ts";
import { startLoad } from "./load.ts";
import { scrape, select, total, type Sample } from "./prom-text.ts";

const FIXTURES = join(ROOT, "test/fixtures");

async function status(s: RunningServer): Promise<StatusJSON> {
  return (await fetch(`${s.adminUrl}/api/applications`)).json() as Promise<StatusJSON>;
}

async function post(url: string, body: unknown): Promise<{ status: number; text: string }> {
  const res = await fetch(url, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } });
  return { status: res.status, text: await res.text() };
}

/** Scrapes until every deployment in `want` has answered exactly its count with status ok (pushes arrive about once a second). */
async function scrapeUntil(s: RunningServer, want: Record<string, number>, status = "ok"): Promise<Sample[]> {
  let last: Sample[] = [];
  try {
    return await waitFor(async () => {
      last = await scrape(s.adminUrl);
      return Object.entries(want).every(([d, n]) => total(last, "serve_bin_deployment_requests_total", { deployment: d, status }) === n) ? last : null;
    }, `requests_total{status=${status}} to reach ${JSON.stringify(want)}`);
  } catch (e) {
    const seen = Object.fromEntries(Object.keys(want).map((d) => [d, total(last, "serve_bin_deployment_requests_total", { deployment: d, status })]));
    throw new Error(`${(e as Error).message}; last scrape had ${JSON.stringify(seen)}`);
  }
}

/** The histogram of one deployment: cumulative buckets by `le`, its sum and count. */
function histogram(samples: Sample[], name: string, where: Record<string, string>) {
  const buckets = select(samples, `${name}_bucket`, where).map((s) => [s.labels.le!, s.value] as const);
  return { buckets, sum: total(samples, `${name}_sum`, where), count: total(samples, `${name}_count`, where) };
}

function expectCumulative(buckets: (readonly [string, number])[], count: number): void {
  expect(buckets.at(-1)).toEqual(["+Inf", count]);
  for (let i = 1; i < buckets.length; i++) expect(buckets[i]![1]).toBeGreaterThanOrEqual(buckets[i - 1]![1]);
}

describe("metrics of the tutorial graph", () => {
  let server: RunningServer;
  const DEPLOYMENTS = ["DAGDriver", "preprocessor", "avgPreprocessor", "Combiner", "Model", "Model_1"];
  beforeAll(async () => {
    server = await startServer(join(EXAMPLES, "tutorial/graph.ts"), { compiled: true });
  });
  afterAll(async () => {
    expect(await server?.stop()).toBe(0);
  });

  it("counts every call of every stage per replica, times it per deployment, and reports each replica's memory and CPU", async () => {
    const N = 6;
    const answers = await Promise.all(Array.from({ length: N }, () => post(`${server.url}/my-dag`, ["5", [1, 2], "sum"])));
    expect(answers.map((a) => a.status)).toEqual(Array(N).fill(200));
    const samples = await scrapeUntil(server, Object.fromEntries(DEPLOYMENTS.map((d) => [d, N])));
    const st = (await status(server)).applications.default!;
    for (const d of DEPLOYMENTS) {
      const ids = st.deployments[d]!.replicas.map((r) => r.id).sort();
      const where = { app: "default", deployment: d };
      // requests: one series per replica that served, labelled with ids the status API knows, nothing but ok
      const requests = select(samples, "serve_bin_deployment_requests_total", where);
      expect(requests.every((s) => ids.includes(s.labels.replica!) && s.labels.status === "ok")).toBe(true);
      // latency histogram per deployment
      const h = histogram(samples, "serve_bin_deployment_request_duration_seconds", where);
      expect(h.count).toBe(N);
      expectCumulative(h.buckets, N);
      expect(h.sum).toBeGreaterThan(0);
      // gauges per live replica, and the queue per deployment
      expect(select(samples, "serve_bin_deployment_ongoing_requests", where).map((s) => s.labels.replica).sort()).toEqual(ids);
      expect(select(samples, "serve_bin_deployment_queued_requests", where)).toHaveLength(1);
      for (const id of ids) {
        expect(total(samples, "serve_bin_replica_resident_memory_bytes", { ...where, replica: id })).toBeGreaterThan(1_000_000);
        expect(total(samples, "serve_bin_replica_cpu_seconds_total", { ...where, replica: id })).toBeGreaterThan(0);
      }
    }
    // The tutorial's model sleeps 0.3 s per call: its histogram says at least that.
    expect(histogram(samples, "serve_bin_deployment_request_duration_seconds", { deployment: "Model" }).sum).toBeGreaterThanOrEqual(N * 0.29);
    // Today's series are still there.
    expect(select(samples, "serve_bin_up")).toEqual([{ name: "serve_bin_up", labels: {}, value: 1 }]);
    expect(select(samples, "serve_bin_http_requests_total", { app: "default", code: "200" }).map((s) => s.value)).toEqual([N]);
    expect(select(samples, "serve_bin_replica_restarts_total", { deployment: "Model" }).map((s) => s.value)).toEqual([0]);
  });

  it("shows calls waiting in callers' queues while more arrive than the stages admit, and none once the load stops", async () => {
    const load = startLoad({ url: `${server.url}/my-dag`, body: ["1", [3], "max"], loops: 24 });
    const queued = await waitFor(async () => {
      const samples = await scrape(server.adminUrl);
      return DEPLOYMENTS.some((d) => total(samples, "serve_bin_deployment_queued_requests", { deployment: d }) > 0) ? samples : null;
    }, "a queued call to show");
    const result = await load.stop();
    expect(result.failed).toBe(0);
    expect(total(queued, "serve_bin_deployment_queued_requests")).toBeGreaterThan(0);
    await waitFor(async () => total(await scrape(server.adminUrl), "serve_bin_deployment_queued_requests") === 0 && total(await scrape(server.adminUrl), "serve_bin_deployment_ongoing_requests") === 0, "queues and ongoing to drain");
  });
});

describe("metrics of the diamond", () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startServer(join(EXAMPLES, "diamond/graph.ts"), { compiled: true });
  });
  afterAll(async () => {
    expect(await server?.stop()).toBe(0);
  });

  it("counts each stage once per request, with the driver, both models and the ensemble", async () => {
    for (let i = 0; i < 7; i++) expect(await post(`${server.url}/`, [1, 2, i])).toEqual({ status: 200, text: String(5 + i) });
    const samples = await scrapeUntil(server, { DAGDriver: 7, Model: 7, Model_1: 7, ensemble: 7 });
    for (const d of ["DAGDriver", "Model", "Model_1", "ensemble"]) {
      expect(select(samples, "serve_bin_deployment_requests_total", { app: "default", deployment: d }).map((s) => [s.labels.replica, s.labels.status, s.value])).toEqual([[`${d}#0`, "ok", 7]]);
      expect(histogram(samples, "serve_bin_deployment_request_duration_seconds", { app: "default", deployment: d }).count).toBe(7);
    }
  });
});

describe("metrics of failures and batches", () => {
  it("labels a failed call with its error code, at the stage that threw and at every caller it failed", async () => {
    await using server = await startServer(join(FIXTURES, "user-error.ts"), { compiled: true });
    expect((await post(`${server.url}/`, "ok")).status).toBe(200);
    for (let i = 0; i < 3; i++) expect((await post(`${server.url}/`, "boom")).status).toBe(500);
    const bad = await fetch(`${server.url}/`, { method: "POST", body: "{" });
    expect(bad.status).toBe(400);
    const samples = await scrapeUntil(server, { flaky: 3, DAGDriver: 3 }, "user");
    const series = select(samples, "serve_bin_deployment_requests_total", { app: "default" }).map((s) => [s.labels.deployment, s.labels.replica, s.labels.status, s.value]);
    expect(series.sort()).toEqual(
      [
        ["DAGDriver", "DAGDriver#0", "bad_request", 1],
        ["DAGDriver", "DAGDriver#0", "ok", 1],
        ["DAGDriver", "DAGDriver#0", "user", 3],
        ["flaky", "flaky#0", "ok", 1],
        ["flaky", "flaky#0", "user", 3],
      ].sort(),
    );
  });

  it("records every batch's size in serve_bin_batch_size", async () => {
    await using server = await startServer(join(FIXTURES, "batch-vec.ts"), { compiled: true });
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => post(`${server.url}/vec/predict`, i)));
    expect(answers.every((a) => a.status === 200)).toBe(true);
    // Each answer carries its model call's number and batch size: the batches that ran, as the model saw them.
    const batches = new Map<number, number>();
    for (const a of answers) {
      const b = JSON.parse(a.text) as { call: number; batchSize: number };
      batches.set(b.call, b.batchSize);
    }
    const samples = await scrapeUntil(server, { Vec: 20 });
    const h = histogram(samples, "serve_bin_batch_size", { app: "default", deployment: "Vec" });
    expect({ count: h.count, sum: h.sum }).toEqual({ count: batches.size, sum: 20 });
    expectCumulative(h.buckets, batches.size);
    const le8 = h.buckets.find(([le]) => le === "8")![1];
    expect(le8).toBe(batches.size); // maxBatchSize is 8
  });
});
