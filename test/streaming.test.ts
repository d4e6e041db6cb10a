import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { deployment, InputNode } from "serve-bin";
import { ROOT, startServer, tempDir, waitFor, type RunningServer, type TempDir } from "./harness.ts";
import { Tokens } from "./fixtures/stream-tokens.ts";

const FIXTURE = join(ROOT, "test/fixtures/stream-tokens.ts");

interface Timed {
  text: string;
  /** Milliseconds from the request to each chunk. */
  at: number[];
  status: number;
  headers: Headers;
}

/** POSTs `body` and reads the answer chunk by chunk, noting when each arrives. */
async function timed(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Timed> {
  const t0 = performance.now();
  const res = await fetch(url, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json", ...headers } });
  const at: number[] = [];
  let text = "";
  const decoder = new TextDecoder();
  for await (const chunk of res.body!) {
    at.push(performance.now() - t0);
    text += decoder.decode(chunk, { stream: true });
  }
  return { text, at, status: res.status, headers: res.headers };
}

/** The lines a generator wrote to its log, for one stream id. */
function events(file: string, id: string): string[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.split(" ").includes(id));
}

const yields = (lines: string[]) => lines.filter((l) => l.startsWith("yield ")).length;

describe("streaming an async generator", () => {
  let dir: TempDir;
  let server: RunningServer;
  let tokensLog: string;
  let chatLog: string;
  let ids = 0;
  const id = () => `s${++ids}`;

  beforeAll(async () => {
    dir = tempDir("sb-stream-");
    tokensLog = join(dir.path, "tokens.log");
    chatLog = join(dir.path, "chat.log");
    // The log paths reach the replicas through each deployment's `env` option.
    const config = join(dir.path, "app.yaml");
    writeFileSync(
      config,
      [
        "applications:",
        "  - name: default",
        `    importPath: ${FIXTURE}`,
        "    deployments:",
        "      - name: Tokens",
        `        env: { STREAM_LOG: ${JSON.stringify(tokensLog)} }`,
        "      - name: Chat",
        `        env: { STREAM_LOG: ${JSON.stringify(chatLog)} }`,
      ].join("\n"),
    );
    server = await startServer(config, { args: ["--app-dir", ROOT] });
  });
  afterAll(async () => {
    expect(await server?.stop()).toBe(0);
    await dir?.[Symbol.asyncDispose]();
  });

  it("arrives over HTTP token by token, the first chunk long before the last", async () => {
    const r = await timed(`${server.url}/s/tokens`, { id: id(), n: 10, delayMs: 100 });
    console.log(`10 tokens 100 ms apart over HTTP: first chunk at ${r.at[0]!.toFixed(1)} ms, last at ${r.at.at(-1)!.toFixed(1)} ms, ${r.at.length} chunks`);
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toBe("text/plain; charset=utf-8");
    expect(r.headers.get("content-length")).toBeNull();
    expect(r.text).toBe(Array.from({ length: 10 }, (_, i) => `tok${i} `).join(""));
    expect(r.at.length).toBeGreaterThanOrEqual(5);
    // Tokens come 100 ms apart: the last one cannot be here before ~1 s, the first one is here after ~0.1 s.
    expect(r.at.at(-1)! - r.at[0]!).toBeGreaterThan(600);
  });

  it("streams through a two-deployment chain: an ingress reading another deployment's stream through its handle", async () => {
    const r = await timed(`${server.url}/s/chat`, { id: id(), n: 10, delayMs: 100 });
    console.log(`10 tokens through Chat → Tokens: first chunk at ${r.at[0]!.toFixed(1)} ms, last at ${r.at.at(-1)!.toFixed(1)} ms, ${r.at.length} chunks`);
    expect(r.status).toBe(200);
    expect(r.text).toBe(Array.from({ length: 10 }, (_, i) => `TOK${i} `).join(""));
    expect(r.at.length).toBeGreaterThanOrEqual(5);
    expect(r.at.at(-1)! - r.at[0]!).toBeGreaterThan(600);
  });

  it("frames chunks as server-sent events when the client accepts text/event-stream", async () => {
    const tokens = await timed(`${server.url}/s/chat`, { id: id(), n: 3, delayMs: 20 }, { accept: "text/event-stream" });
    expect(tokens.status).toBe(200);
    expect(tokens.headers.get("content-type")).toBe("text/event-stream");
    expect(tokens.headers.get("cache-control")).toBe("no-cache");
    expect(tokens.text).toBe("data: TOK0 \n\ndata: TOK1 \n\ndata: TOK2 \n\n");
    const records = await timed(`${server.url}/s/records`, 3, { accept: "text/event-stream" });
    expect(records.text).toBe('data: {"i":0,"square":0}\n\ndata: {"i":1,"square":1}\n\ndata: {"i":2,"square":4}\n\n');
  });

  it("writes chunks that are not strings as JSON lines when the client does not ask for events", async () => {
    const r = await timed(`${server.url}/s/records`, 3);
    expect(r.text.split("\n").filter(Boolean).map((l) => JSON.parse(l))).toEqual([
      { i: 0, square: 0 },
      { i: 1, square: 1 },
      { i: 2, square: 4 },
    ]);
  });

  it("stops the producer when the client disconnects: its finally runs and it yields no more", async () => {
    const s = id();
    const ctl = new AbortController();
    const res = await fetch(`${server.url}/s/tokens`, { method: "POST", body: JSON.stringify({ id: s, n: 100, delayMs: 50 }), signal: ctl.signal });
    const reader = res.body!.getReader();
    for (let got = 0; got < 3; got++) await reader.read();
    ctl.abort();
    await waitFor(() => events(tokensLog, s).includes(`finally ${s}`), "the generator's finally after the client went away", 10_000);
    // 100 tokens would take 5 s; the producer ended after the few the client read, plus what was in flight.
    expect(yields(events(tokensLog, s))).toBeLessThan(20);
  });

  it("stops both ends of a chain when the client disconnects", async () => {
    const s = id();
    const ctl = new AbortController();
    const res = await fetch(`${server.url}/s/chat`, { method: "POST", body: JSON.stringify({ id: s, n: 100, delayMs: 50 }), signal: ctl.signal });
    const reader = res.body!.getReader();
    for (let got = 0; got < 3; got++) await reader.read();
    ctl.abort();
    await waitFor(() => events(chatLog, s).includes(`chat finally ${s}`), "the ingress generator's finally", 10_000);
    await waitFor(() => events(tokensLog, s).includes(`finally ${s}`), "the upstream generator's finally", 10_000);
    expect(yields(events(tokensLog, s))).toBeLessThan(20);
  });

  it("holds a fast producer within the stream window while its consumer in another process stops reading", async () => {
    const s = id();
    const res = await fetch(`${server.url}/s/stall`, { method: "POST", body: JSON.stringify({ id: s, take: 5, holdMs: 500 }) });
    expect(await res.json()).toEqual({ consumed: 5 });
    await waitFor(() => events(tokensLog, s).includes(`finally ${s}`), "the producer's finally once the consumer returned", 10_000);
    const produced = yields(events(tokensLog, s));
    console.log(`a producer of 10,000 chunks whose consumer read 5 and paused 500 ms produced ${produced}`);
    // The window (16 chunks in flight) plus the one the producer holds while it waits for credit.
    expect(produced).toBeGreaterThanOrEqual(5);
    expect(produced).toBeLessThanOrEqual(17);
  });

  it("frees the producer's replica slot when a consumer abandons a stream that waits for credit", async () => {
    // Tokens runs with maxOngoingRequests 5: six abandoned streams would leave no slot if one leaked.
    for (let i = 0; i < 6; i++) {
      const res = await fetch(`${server.url}/s/stall`, { method: "POST", body: JSON.stringify({ id: id(), take: 1, holdMs: 50 }), signal: AbortSignal.timeout(10_000) });
      expect(res.status).toBe(200);
    }
    const r = await fetch(`${server.url}/s/tokens`, { method: "POST", body: JSON.stringify({ id: id(), n: 3, delayMs: 0 }), signal: AbortSignal.timeout(10_000) });
    expect(await r.text()).toBe("tok0 tok1 tok2 ");
  });
});

describe("streaming in one process", () => {
  it("gives an async iterable of the same chunks from execute()", async () => {
    const input = new InputNode();
    const dag = deployment(Tokens).bind().generate.bind(input);
    const out = (await dag.execute({ id: "local", n: 3, delayMs: 0 })) as unknown as AsyncIterable<string>;
    const chunks: string[] = [];
    for await (const c of out) chunks.push(c);
    expect(chunks).toEqual(["tok0 ", "tok1 ", "tok2 "]);
  });
});
