/**
 * The floor of http-noop's shape: what a team would write by hand for
 * "HTTP in one process, the work in another". A bare Bun.serve parses the
 * JSON POST, sends it as one msgpack call frame over a unix socket to an echo
 * process (bench/lib/echo-peer.ts, started here), and answers with what comes
 * back as JSON. No routing, limits, timeouts, cancellation, metrics or graph:
 * only the two processes and the hop between them. Prints its URL.
 *   bun bench/lib/http-relay.ts
 */
import { decode, encode } from "@msgpack/msgpack";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Socket } from "bun";
import { FrameReader, framed } from "./raw-frames.ts";

const dir = mkdtempSync(join(tmpdir(), "sb-relay-"));
const path = join(dir, "echo.sock");
const echo = Bun.spawn([process.execPath, join(import.meta.dir, "echo-peer.ts"), path], { stdout: "pipe", stderr: "inherit" });
const reader = echo.stdout.getReader();
let seen = "";
while (!seen.includes("echo peer ready")) {
  const { value, done } = await reader.read();
  if (done) throw new Error("the echo peer ended before it was ready");
  seen += new TextDecoder().decode(value);
}

/** Calls sent and not yet answered, by id. */
const waiting = new Map<number, (v: unknown) => void>();
let nextId = 1;
const peer = await Bun.connect<FrameReader>({
  unix: path,
  socket: {
    open: (s) => void (s.data = new FrameReader()),
    data(s, chunk) {
      for (const body of s.data.push(chunk)) {
        const msg = decode(body) as { id: number; v: unknown };
        const resolve = waiting.get(msg.id)!;
        waiting.delete(msg.id);
        resolve(msg.v);
      }
    },
  },
});

const server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  async fetch(req) {
    const body = await req.json();
    const id = nextId++;
    const answer = new Promise((resolve) => waiting.set(id, resolve));
    peer.write(framed(encode({ t: "call", id, a: [body] })));
    return Response.json(await answer);
  },
});

function stop(): void {
  server.stop(true);
  echo.kill("SIGTERM");
  rmSync(dir, { recursive: true, force: true });
  process.exit(0);
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
process.stdout.write(`listening on http://127.0.0.1:${server.port} (echo peer pid ${echo.pid})\n`);
