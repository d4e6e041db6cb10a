/**
 * The data plane over real HTTP, against real replica processes: client
 * errors (400, 404, 413), how results become HTTP, a user's fetch ingress,
 * and a graph whose root is not an ingress.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { copyFileSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { EXAMPLES, ROOT, alive, childPids, leftovers, postJSON, startServer, tempDir, waitFor, type RunningServer, type TempDir, gone, reap, replicasOf, stopCleanly } from "./harness.ts";


const FIXTURES = join(ROOT, "test/fixtures");

/**
 * Sends a request with a chunked body (no content-length) over a raw socket
 * and returns the status line's code and the body. With `stopAfter`, it stops
 * writing once that many body bytes are out and waits for the answer (a server
 * that refuses the body answers then; writing on would only race its close).
 */
function chunkedPost(url: string, path: string, body: Uint8Array, stopAfter = Infinity, chunkBytes = 256): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port) });
    const received: Buffer[] = [];
    socket.on("data", (d: Buffer) => received.push(d));
    socket.on("error", () => {}); // a reset after the answer: what was read still counts
    socket.setTimeout(10_000, () => socket.destroy()); // never hang: no answer in 10 s fails below
    socket.on("close", () => {
      const text = Buffer.concat(received).toString("latin1");
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
      if (!m) return reject(new Error(`no HTTP response, got ${JSON.stringify(text.slice(0, 200))}`));
      const split = text.indexOf("\r\n\r\n");
      resolve({ status: Number(m[1]), body: text.slice(split + 4) });
    });
    socket.on("connect", () => {
      socket.write(`POST ${path} HTTP/1.1\r\nhost: ${hostname}:${port}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n`);
      let sent = 0;
      for (let i = 0; i < body.length && sent <= stopAfter; i += chunkBytes) {
        const part = body.subarray(i, i + chunkBytes);
        socket.write(Buffer.concat([Buffer.from(`${part.length.toString(16)}\r\n`), part, Buffer.from("\r\n")]));
        sent += part.length;
      }
      if (sent >= body.length) socket.write("0\r\n\r\n");
    });
  });
}

/** Decodes a chunked HTTP/1.1 body. */
function dechunk(raw: string): string {
  let out = "";
  let rest = raw;
  for (;;) {
    const eol = rest.indexOf("\r\n");
    const n = parseInt(rest.slice(0, eol), 16);
    if (!n) return out;
    out += rest.slice(eol + 2, eol + 2 + n);
    rest = rest.slice(eol + 2 + n + 2);
  }
}

/** A JSON string of exactly `n` bytes. */
const jsonOfBytes = (n: number) => new TextEncoder().encode(JSON.stringify("a".repeat(n - 2)));

describe("a server with two applications and proxy.maxBodyBytes 1024", () => {
  let dir: TempDir;
  let server: RunningServer;

  beforeAll(async () => {
    dir = tempDir();
    for (const f of ["encodings.ts", "fetch-ingress.ts"]) copyFileSync(join(FIXTURES, f), join(dir.path, f));
    writeFileSync(
      join(dir.path, "app.yaml"),
      [
        "proxy: { maxBodyBytes: 1024 }",
        "applications:",
        "  - name: enc",
        "    routePrefix: /enc",
        "    importPath: ./encodings.ts",
        "  - name: tea",
        "    importPath: ./fetch-ingress.ts",
        "",
      ].join("\n"),
    );
    server = await startServer(join(dir.path, "app.yaml"), { cwd: dir.path });
  });

  afterAll(async () => {
    try {
      if (server) await stopCleanly(server);
    } finally {
      await dir?.[Symbol.asyncDispose]();
    }
  });

  it("answers malformed JSON with 400 and a JSON body saying the body is not valid JSON", async () => {
    const res = await fetch(`${server.url}/enc/text`, { method: "POST", body: '{"name": ', headers: { "content-type": "application/json" } });
    expect(res.status).toBe(400);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    expect(await res.json()).toEqual({
      error: "bad_request",
      message: expect.stringMatching(/^the request body is not valid JSON \(.+\); send a JSON document$/),
    });
  });

  it("answers an unknown route with 404 and a JSON body naming the routes", async () => {
    const res = await postJSON(`${server.url}/nowhere/text`, "x");
    expect({ status: res.status, body: await res.json() }).toEqual({
      status: 404,
      body: { error: "not_found", message: "no application serves /nowhere/text; routes: /enc, /tea" },
    });
    // A prefix matches whole path segments only.
    const partial = await postJSON(`${server.url}/encore`, "x");
    expect({ status: partial.status, body: await partial.json() }).toEqual({
      status: 404,
      body: { error: "not_found", message: "no application serves /encore; routes: /enc, /tea" },
    });
  });

  it("answers a path under a multi-graph DAGDriver that none of its graphs serves with 404 naming the ones it has", async () => {
    const res = await postJSON(`${server.url}/enc/nope`, "bob");
    expect({ status: res.status, body: await res.json() }).toEqual({
      status: 404,
      body: { error: "not_found", message: "no graph at /nope; this DAGDriver serves /object, /bytes, /text" },
    });
  });

  it("lists its routes at /-/routes", async () => {
    const res = await fetch(`${server.url}/-/routes`);
    expect({ status: res.status, body: await res.json() }).toEqual({ status: 200, body: { "/enc": "enc", "/tea": "tea" } });
  });

  it("refuses a body over maxBodyBytes with 413, with or without a content-length, and keeps serving", async () => {
    const big = jsonOfBytes(2048);
    const withLength = await fetch(`${server.url}/enc/text`, { method: "POST", body: big, headers: { "content-type": "application/json" } });
    expect(withLength.status).toBe(413);
    await withLength.arrayBuffer();

    const chunked = await chunkedPost(server.url, "/enc/text", big, 1024);
    expect(chunked.status).toBe(413);

    // Under the limit, chunked or not, it is served.
    const small = jsonOfBytes(1000);
    const okChunked = await chunkedPost(server.url, "/enc/text", small);
    expect({ status: okChunked.status, body: dechunkIfNeeded(okChunked.body) }).toEqual({ status: 200, body: `hello ${"a".repeat(998)}` });
    const ok = await fetch(`${server.url}/enc/text`, { method: "POST", body: small });
    expect({ status: ok.status, body: await ok.text() }).toEqual({ status: 200, body: `hello ${"a".repeat(998)}` });
  });

  it("sends a string result as text/plain", async () => {
    const res = await postJSON(`${server.url}/enc/text`, "bob");
    expect({ status: res.status, type: res.headers.get("content-type"), body: await res.text() }).toEqual({
      status: 200,
      type: "text/plain; charset=utf-8",
      body: "hello bob",
    });
  });

  it("sends a Uint8Array result as application/octet-stream", async () => {
    const res = await postJSON(`${server.url}/enc/bytes`, 5);
    expect({ status: res.status, type: res.headers.get("content-type"), body: [...new Uint8Array(await res.arrayBuffer())] }).toEqual({
      status: 200,
      type: "application/octet-stream",
      body: [0, 3, 6, 9, 12],
    });
  });

  it("sends an object as JSON, typed arrays as arrays of numbers and BigInt as strings", async () => {
    const res = await postJSON(`${server.url}/enc/object`, 3);
    expect({ status: res.status, type: res.headers.get("content-type"), body: await res.json() }).toEqual({
      status: 200,
      type: "application/json",
      body: { embedding: [0.5, 3, -2.25], ids: ["-1", "1099511627776"], total: "18446744073709551619", label: "ok" },
    });
  });

  it("passes the Response of a user's fetch ingress as is: status, headers and body", async () => {
    const res = await fetch(`${server.url}/tea/pot?milk=1`, { method: "PUT", body: "earl grey" });
    expect({ status: res.status, type: res.headers.get("content-type"), madeBy: res.headers.get("x-made-by"), body: await res.text() }).toEqual({
      status: 418,
      type: "text/x-teapot",
      madeBy: "Teapot",
      body: "PUT /tea/pot <earl grey>",
    });
  });

  it("keeps a header a fetch ingress's Response gives twice (set-cookie), and puts the request id in place of its own", async () => {
    const res = await fetch(`${server.url}/tea/cookies`, { headers: { "x-request-id": "req-cookies-1" } });
    expect({ status: res.status, cookies: res.headers.getSetCookie(), id: res.headers.get("x-request-id"), type: res.headers.get("content-type"), body: await res.text() }).toEqual({
      status: 200,
      cookies: ["a=1; Path=/", "b=2; Path=/"],
      id: "req-cookies-1",
      type: "text/plain",
      body: "two cookies",
    });
  });

  it("gives a fetch ingress the request's headers, a repeated one joined, and the route prefix it was matched by", async () => {
    const headers = new Headers({ "x-user": "ada", "content-type": "application/json" });
    headers.append("x-tag", "a");
    headers.append("x-tag", "b");
    const res = await fetch(`${server.url}/tea/headers`, { method: "POST", body: "{}", headers });
    expect(await res.json()).toEqual({ user: "ada", tags: "a, b", prefix: "/tea", type: "application/json" });
  });

  it("passes a fetch ingress's answer without a body: a 204, and a 200 with a null body", async () => {
    const answers = [];
    for (const path of ["nothing", "empty"]) {
      const res = await fetch(`${server.url}/tea/${path}`);
      answers.push({ status: res.status, madeBy: res.headers.get("x-made-by"), length: res.headers.get("content-length"), body: await res.text() });
    }
    expect(answers).toEqual([
      { status: 204, madeBy: "Teapot", length: null, body: "" },
      { status: 200, madeBy: "Teapot", length: "0", body: "" },
    ]);
  });

  it("puts the request id on a fetch ingress's answer beside its own headers", async () => {
    const res = await fetch(`${server.url}/tea/pot`, { method: "POST", body: "x", headers: { "x-request-id": "req-tea-1" } });
    expect({ id: res.headers.get("x-request-id"), madeBy: res.headers.get("x-made-by"), type: res.headers.get("content-type") }).toEqual({ id: "req-tea-1", madeBy: "Teapot", type: "text/x-teapot" });
  });

  it("keeps the type a fetch ingress's Response takes from its body when it sets no headers", async () => {
    const res = await fetch(`${server.url}/tea/plain`);
    expect({ status: res.status, type: res.headers.get("content-type"), body: await res.text() }).toEqual({
      status: 200,
      type: "text/plain;charset=utf-8",
      body: "plain",
    });
  });
});

function dechunkIfNeeded(body: string): string {
  return /^[0-9a-f]+\r\n/.test(body) ? dechunk(body) : body;
}

describe("a graph whose root is not an ingress (the REP diamond)", () => {
  it("is served at / through the default DAGDriver: [1,2,3] answers 8", async () => {
    const server = await startServer(join(EXAMPLES, "diamond/graph.ts"));
    try {
      const res = await postJSON(`${server.url}/`, [1, 2, 3]);
      expect({ status: res.status, type: res.headers.get("content-type"), body: await res.text() }).toEqual({ status: 200, type: "application/json", body: "8" });
      const deeper = await postJSON(`${server.url}/any/path`, [2, 2, 2]);
      expect({ status: deeper.status, body: await deeper.json() }).toEqual({ status: 200, body: 8 });
      const routes = await fetch(`${server.url}/-/routes`);
      expect(await routes.json()).toEqual({ "/": "default" });
    } finally {
      await stopCleanly(server);
    }
  });
});
