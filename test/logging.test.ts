/**
 * `logging: { format, level }` (SPEC §10): JSON lines with time, level, app,
 * deployment, replica and request id for the server's own lines and for what
 * user code prints inside a request; levels drop what is below them.
 */
import { describe, expect, it } from "vitest";
import { copyFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT, startServer, tempDir, waitFor } from "./harness.ts";

async function serveWith(dir: string, logging: unknown, tracing?: unknown) {
  copyFileSync(join(ROOT, "test/fixtures/logs.ts"), join(dir, "graph.ts"));
  const config = join(dir, "app.json");
  writeFileSync(config, JSON.stringify({ logging, tracing, applications: [{ name: "default", importPath: "./graph.ts" }] }));
  return startServer(config, { compiled: true });
}

async function say(url: string, x: string, requestId: string, extra: Record<string, string> = {}): Promise<void> {
  const res = await fetch(url, { method: "POST", body: JSON.stringify(x), headers: { "x-request-id": requestId, ...extra } });
  expect(await res.text()).toBe(`said ${x}`);
  expect(res.headers.get("x-request-id")).toBe(requestId);
}

describe("logging", () => {
  it("writes every line as JSON, and what user code prints in a request with its deployment, replica, request id and trace id", async () => {
    await using dir = tempDir();
    // A collector that takes the spans, so the request is traced and its lines carry the trace id.
    const collector = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response("{}") });
    await using _stopCollector = { [Symbol.asyncDispose]: () => collector.stop(true) };
    await using server = await serveWith(dir.path, { format: "json", level: "info" }, { otlpEndpoint: `http://127.0.0.1:${collector.port}` });
    await say(`${server.url}/`, "hello", "req-42");
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    await say(`${server.url}/`, "traced", "req-43", { traceparent: `00-${traceId}-00f067aa0ba902b7-01` });
    const records = () =>
      server
        .output()
        .split("\n")
        .filter((l) => l.trim())
        .map((l) => {
          try {
            return JSON.parse(l) as Record<string, string>;
          } catch {
            throw new Error(`a line that is not JSON: ${l}`);
          }
        });
    const warn = await waitFor(() => records().find((r) => r.msg === "careful with hello"), "the replica's warn line");
    const info = records().find((r) => r.msg === "handling hello")!;
    expect(info).toEqual({ time: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/), level: "info", app: "default", deployment: "talker", replica: "talker#0", requestId: "req-42", traceId: expect.stringMatching(/^[0-9a-f]{32}$/), msg: "handling hello" });
    expect(warn).toEqual({ ...info, time: expect.any(String), level: "warn", msg: "careful with hello" });
    expect(warn.traceId).toBe(info.traceId); // sampleRatio 1: a request with no traceparent starts a trace
    expect(records().some((r) => r.msg?.startsWith("debug detail"))).toBe(false);
    const traced = await waitFor(() => records().find((r) => r.msg === "handling traced"), "the traced request's line");
    expect(traced).toMatchObject({ requestId: "req-43", traceId, deployment: "talker" });
    // The server's own lines: JSON too, with the replica they are about.
    expect(records().find((r) => r.msg === "default/talker#0 running")).toEqual({ time: expect.any(String), level: "info", app: "default", deployment: "talker", replica: "talker#0", msg: "default/talker#0 running" });
    expect(records().find((r) => r.msg?.startsWith("listening on "))).toMatchObject({ level: "info" });
    expect(records().every((r) => r.time && r.level && r.msg)).toBe(true);
  });

  it("keeps text lines, drops those below the level, and still says where it listens and that it is ready", async () => {
    await using dir = tempDir();
    await using server = await serveWith(dir.path, { format: "text", level: "warn" });
    await say(`${server.url}/`, "there", "req-7");
    await waitFor(() => server.output().includes("[default/talker#0] careful with there"), "the replica's warn line, prefixed as before");
    const out = server.output();
    expect(out).not.toContain("handling there");
    expect(out).not.toContain("debug detail");
    expect(out).not.toContain("talker#0 starting");
    expect(out).toMatch(/^serve-bin: listening on http/m);
    expect(out).toMatch(/^serve-bin: ready in \d+ ms$/m);
  });

  it("refuses an unknown format or level with the path and the values it takes", async () => {
    await using dir = tempDir();
    const config = join(dir.path, "bad.json");
    writeFileSync(config, JSON.stringify({ logging: { format: "xml", level: "loud" } }));
    const proc = Bun.spawn([join(ROOT, "dist/serve-bin"), "run", config, "--port", "0", "--admin-port", "0"], { stdout: "pipe", stderr: "pipe" });
    const [stderr, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
    expect(code).toBe(2);
    expect(stderr).toContain('logging.format: expected "text" (lines for people) or "json" (one JSON object a line)');
    expect(stderr).toContain('logging.level: expected one of "debug", "info", "warn", "error"');
  });
});
