/**
 * Traces across hops (SPEC §10): a W3C traceparent from the client is
 * continued through every deployment call, one span per call reaches an
 * OTLP/HTTP endpoint this test runs, all with one trace id, parented as the
 * calls were made.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { EXAMPLES, ROOT, startServer, tempDir, waitFor, type RunningServer, type TempDir } from "./harness.ts";

interface Span {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  attributes: { key: string; value: { stringValue?: string; doubleValue?: number } }[];
  status: { code: number; message?: string };
}

const attr = (s: Span, key: string) => {
  const v = s.attributes.find((a) => a.key === key)?.value;
  return v?.stringValue ?? v?.doubleValue;
};

describe("tracing", () => {
  const spans: Span[] = [];
  const paths = new Set<string>();
  let collector: ReturnType<typeof Bun.serve>;
  let server: RunningServer;
  let dir: TempDir;
  beforeAll(async () => {
    collector = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      async fetch(req) {
        paths.add(new URL(req.url).pathname);
        const body = (await req.json()) as { resourceSpans: { scopeSpans: { spans: Span[] }[] }[] };
        for (const rs of body.resourceSpans) for (const ss of rs.scopeSpans) spans.push(...ss.spans);
        return Response.json({});
      },
    });
    dir = tempDir();
    const config = join(dir.path, "app.json");
    writeFileSync(config, JSON.stringify({ tracing: { otlpEndpoint: `http://127.0.0.1:${collector.port}`, sampleRatio: 1 }, applications: [{ name: "default", importPath: join(EXAMPLES, "tutorial/graph.ts") }] }));
    server = await startServer(config, { compiled: true, args: ["--app-dir", ROOT] });
  });
  afterAll(async () => {
    expect(await server?.stop()).toBe(0);
    await collector?.stop(true);
    await dir?.[Symbol.asyncDispose]();
  });

  const post = (headers: Record<string, string> = {}) => fetch(`${server.url}/my-dag`, { method: "POST", body: JSON.stringify(["5", [1, 2], "sum"]), headers });
  const ofTrace = (traceId: string) => spans.filter((s) => s.traceId === traceId);

  it("continues the client's trace through every stage, one span per call, parented as the calls were made", async () => {
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const clientSpan = "00f067aa0ba902b7";
    const res = await post({ traceparent: `00-${traceId}-${clientSpan}-01` });
    expect(res.status).toBe(200);
    const requestId = res.headers.get("x-request-id");
    expect(requestId).toMatch(/^[0-9a-z]+-[0-9a-z]+-[0-9a-z]+$/);
    const got = await waitFor(() => (ofTrace(traceId).length >= 6 ? ofTrace(traceId) : null), "six spans of the trace");
    expect(got.map((s) => s.name).sort()).toEqual(["Combiner.run", "DAGDriver HTTP", "Model.forward", "Model_1.forward", "avgPreprocessor", "preprocessor"]);
    const by = Object.fromEntries(got.map((s) => [s.name, s]));
    const driver = by["DAGDriver HTTP"]!;
    expect(driver.parentSpanId).toBe(clientSpan);
    for (const n of ["preprocessor", "avgPreprocessor", "Combiner.run"]) expect(by[n]!.parentSpanId).toBe(driver.spanId);
    for (const n of ["Model.forward", "Model_1.forward"]) expect(by[n]!.parentSpanId).toBe(by["Combiner.run"]!.spanId);
    expect(new Set(got.map((s) => s.spanId)).size).toBe(6);
    for (const s of got) {
      expect(s.status).toEqual({ code: 1 });
      expect(attr(s, "serve_bin.status")).toBe("ok");
      expect(attr(s, "serve_bin.request_id")).toBe(requestId);
      expect(attr(s, "serve_bin.replica")).toMatch(new RegExp(`^${attr(s, "serve_bin.deployment")}#\\d$`));
      // Every call but the one from the proxy waited (or not) in a caller's queue, and says how long.
      if (s !== driver) expect(attr(s, "serve_bin.queue_wait_ms")).toBeGreaterThanOrEqual(0);
    }
    expect(paths).toEqual(new Set(["/v1/traces"]));
  });

  it("starts a new trace for a request without a traceparent, and records nothing for one that says not sampled", async () => {
    const unsampled = "0af7651916cd43dd8448eb211c80319c";
    expect((await post({ traceparent: `00-${unsampled}-b7ad6b7169203331-00` })).status).toBe(200);
    const before = new Set(spans.map((s) => s.traceId));
    expect((await post()).status).toBe(200);
    const fresh = await waitFor(() => {
      const roots = spans.filter((s) => !before.has(s.traceId) && s.name === "DAGDriver HTTP" && s.parentSpanId === undefined);
      return roots.length === 1 && ofTrace(roots[0]!.traceId).length === 6 ? roots[0] : null;
    }, "a new trace of six spans");
    expect(fresh.traceId).toMatch(/^[0-9a-f]{32}$/);
    // Each replica flushes its spans in order: the later trace arrived whole, so the earlier one would have too.
    expect(ofTrace(unsampled)).toEqual([]);
  });
});

describe("tracing config", () => {
  it("refuses an endpoint that is not an http(s) URL and a sampleRatio outside 0..1, with the path and what to write", async () => {
    await using dir = tempDir();
    const config = join(dir.path, "bad.json");
    writeFileSync(config, JSON.stringify({ tracing: { otlpEndpoint: "collector:4318", sampleRatio: 2 } }));
    const proc = Bun.spawn([join(ROOT, "dist/serve-bin"), "run", config, "--port", "0", "--admin-port", "0"], { stdout: "pipe", stderr: "pipe" });
    const [stderr, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
    expect(code).toBe(2);
    expect(stderr).toContain('tracing.otlpEndpoint: expected an http(s) URL of an OTLP/HTTP collector, e.g. "http://127.0.0.1:4318"');
    expect(stderr).toContain("tracing.sampleRatio: expected a number from 0 to 1");
  });
});
