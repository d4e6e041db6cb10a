/**
 * Issue 17 item 6: the admin API on 127.0.0.1 is reachable by every web page
 * the machine's browser has open. A cross-site form could POST
 * /api/shutdown as text/plain (no preflight) and stop the server, and a page
 * whose name was re-pointed at 127.0.0.1 (DNS rebinding) was answered as if
 * it were local. Now a foreign Host or a cross-site Origin gets 403 and a
 * write that is not JSON (or YAML for PUT) gets 415, as JSON errors, over
 * real HTTP to a real server.
 */
import { describe, expect, it } from "vitest";
import { connect } from "node:net";
import { ROOT, runCli, startServer, stopCleanly, waitFor } from "./harness.ts";

/** One raw HTTP/1.1 request, so that Host and Origin are exactly what a browser would send. */
function raw(port: number, lines: string[], body = ""): Promise<{ status: number; type: string; json: Record<string, unknown> | null }> {
  return new Promise((resolve, reject) => {
    const s = connect(port, "127.0.0.1");
    let got = "";
    s.on("data", (d) => (got += d));
    s.on("error", reject);
    s.on("close", () => {
      const [head, text = ""] = got.split("\r\n\r\n");
      const status = Number(/^HTTP\/1\.1 (\d+)/.exec(head ?? "")?.[1]);
      const type = /\r\ncontent-type: ([^\r]+)/i.exec(head ?? "")?.[1] ?? "";
      let json: Record<string, unknown> | null = null;
      try {
        json = JSON.parse(text);
      } catch {}
      resolve({ status, type, json });
    });
    s.write(`${[...lines, `Content-Length: ${Buffer.byteLength(body)}`, "Connection: close"].join("\r\n")}\r\n\r\n${body}`);
  });
}

describe("the admin API refuses what a browser page sends it", () => {
  it("403 for a foreign Host or a cross-site Origin, 415 for a write that is not JSON; its own callers still get through", async () => {
    const server = await startServer("examples/diamond/graph.ts", { cwd: ROOT });
    const port = Number(new URL(server.adminUrl).port);
    try {
      const get = (host: string, extra: string[] = []) => raw(port, ["GET /api/applications HTTP/1.1", `Host: ${host}`, ...extra]);

      // The attack of the issue: a cross-site form posting text/plain to /api/shutdown.
      const csrf = await raw(port, ["POST /api/shutdown HTTP/1.1", `Host: 127.0.0.1:${port}`, "Origin: https://evil.example", "Content-Type: text/plain"], "x=1");
      expect(csrf).toEqual({
        status: 403,
        type: expect.stringContaining("application/json"),
        json: { error: "forbidden", message: expect.stringContaining("refuses requests from web pages of other origins (Origin https://evil.example)") },
      });
      // The same form without an Origin (an old browser, or a page that strips it): refused for its type.
      const plain = await raw(port, ["POST /api/shutdown HTTP/1.1", `Host: 127.0.0.1:${port}`, "Content-Type: text/plain"], "x=1");
      expect(plain).toEqual({
        status: 415,
        type: expect.stringContaining("application/json"),
        json: { error: "unsupported_media_type", message: expect.stringContaining('POST /api/shutdown needs Content-Type application/json, not "text/plain"') },
      });
      const form = await raw(port, ["PATCH /api/applications/diamond/deployments/Model HTTP/1.1", `Host: 127.0.0.1:${port}`, "Content-Type: application/x-www-form-urlencoded"], '{"numReplicas":2}');
      expect(form.status).toBe(415);
      const yamlPatch = await raw(port, ["PATCH /api/applications/diamond/deployments/Model HTTP/1.1", `Host: 127.0.0.1:${port}`, "Content-Type: application/yaml"], "numReplicas: 2");
      expect(yamlPatch.json).toMatchObject({ error: "unsupported_media_type", message: expect.stringContaining("needs Content-Type application/json,") });

      // DNS rebinding: the page's own name, pointed at 127.0.0.1.
      expect(await get(`rebind.evil.example:${port}`)).toEqual({
        status: 403,
        type: expect.stringContaining("application/json"),
        json: { error: "forbidden", message: expect.stringContaining(`answers only to its own address (Host 127.0.0.1:${port}`) },
      });
      expect((await get(`127.0.0.1:${port + 1}`)).status).toBe(403);
      expect((await get("127.0.0.1")).status).toBe(403);
      expect((await get(`127.0.0.1:${port}`, ["Sec-Fetch-Site: cross-site"])).status).toBe(403);
      expect((await get(`127.0.0.1:${port}`, ["Origin: null"])).status).toBe(403);

      // Its own callers: loopback names with the right port, a same-origin page, the CLI.
      for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`]) expect((await get(host)).status).toBe(200);
      expect((await get(`localhost:${port}`, [`Origin: http://localhost:${port}`, "Sec-Fetch-Site: same-origin"])).status).toBe(200);
      const yamlPut = await raw(port, ["PUT /api/applications HTTP/1.1", `Host: 127.0.0.1:${port}`, "Content-Type: application/yaml"], "applications:\n  - name: diamond\n    importPath: 7\n");
      expect(yamlPut.status).toBe(422); // read as YAML and validated, not refused for its type
      expect((await runCli(["status", "--address", server.adminUrl])).code).toBe(0);

      expect(server.proc.exitCode).toBe(null);
      const stop = await runCli(["shutdown", "--address", server.adminUrl]);
      expect(stop).toMatchObject({ code: 0, stdout: expect.stringContaining("stopped") });
      await waitFor(() => server.proc.exitCode !== null, "the server to exit");
      expect(server.proc.exitCode).toBe(0);
    } finally {
      await stopCleanly(server);
    }
  });
});
