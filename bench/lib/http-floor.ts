/**
 * The floor of chain10 and ensemble10 over HTTP: a bare Bun.serve that, for
 * each `POST {"x": i}`, makes the same ten calls through the same ten raw
 * processes the in-driver floor uses (the head of a line of relays, or ten
 * echo peers at once) and answers the result as JSON, as the fixtures'
 * drivers do. No runtime: only HTTP, the processes, and one message per hop.
 *   bun bench/lib/http-floor.ts chain|fanout /path/to/peer.sock [...]
 */
import { connectRaw } from "./raw-floor.ts";

const [shape, ...paths] = process.argv.slice(2);
if ((shape !== "chain" && shape !== "fanout") || paths.length === 0) throw new Error("usage: bun bench/lib/http-floor.ts chain|fanout SOCKET...");
const clients = await Promise.all(paths.map(connectRaw));
const server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  async fetch(req) {
    const { x } = (await req.json()) as { x: number };
    return Response.json(shape === "chain" ? await clients[0]!.call(x) : await Promise.all(clients.map((c) => c.call(x))));
  },
});
process.on("SIGTERM", () => {
  server.stop(true);
  for (const c of clients) c.socket.end();
  process.exit(0);
});
process.stdout.write(`listening on http://127.0.0.1:${server.port}\n`);
