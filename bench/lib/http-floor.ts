/**
 * The floor over HTTP of a graph's shape: a bare Bun.serve that answers each
 * JSON POST by calls to raw processes in one of bench/lib/floor-shapes.ts's
 * shapes (no runtime: only HTTP, the processes, and one message per hop), as
 * JSON.
 *   bun bench/lib/http-floor.ts chain|fanout|relay|diamond /path/to/peer.sock [...]
 */
import { floorShape } from "./floor-shapes.ts";
import { connectRaw } from "./raw-floor.ts";

const [shape, ...paths] = process.argv.slice(2);
const answer = floorShape(shape, "bun bench/lib/http-floor.ts SHAPE SOCKET...");
if (paths.length === 0) throw new Error("http-floor: give the sockets of the peers it calls");
const clients = await Promise.all(paths.map(connectRaw));
const server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  async fetch(req) {
    const v = await answer(clients, await req.json());
    // A string goes as text, as a DAGDriver with jsonRequest answers one.
    return typeof v === "string" ? new Response(v) : Response.json(v);
  },
});
process.on("SIGTERM", () => {
  server.stop(true);
  for (const c of clients) c.socket.end();
  process.exit(0);
});
process.stdout.write(`listening on http://127.0.0.1:${server.port}\n`);
