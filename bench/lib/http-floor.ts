/**
 * The floor over HTTP of a graph's shape: a bare Bun.serve that answers each
 * JSON POST by calls to raw processes (no runtime: only HTTP, the processes,
 * and one message per hop), as JSON.
 *   chain    `{"x": i}` → the head of a line of relays (chain10's floor)
 *   fanout   `{"x": i}` → ten echo peers at once (ensemble10's floor)
 *   relay    the whole body → one peer, answer what comes back (a relay in
 *            front of a process that does the work, as serve-bin's main process)
 *   diamond  `[a, b, x]` → the diamond over three function peers
 *            (bench/lib/diamond-floor.ts)
 *   bun bench/lib/http-floor.ts chain|fanout|relay|diamond /path/to/peer.sock [...]
 */
import { diamondOver } from "./diamond-floor.ts";
import { connectRaw } from "./raw-floor.ts";
import type { RawClient } from "./raw-client.ts";

const SHAPES: Record<string, (clients: RawClient[], body: any) => Promise<unknown>> = {
  chain: (clients, { x }: { x: number }) => clients[0]!.call(x),
  fanout: (clients, { x }: { x: number }) => Promise.all(clients.map((c) => c.call(x))),
  relay: (clients, body) => clients[0]!.call(body),
  diamond: (clients, body: [number, number, number]) => diamondOver(clients, body),
};
const [shape, ...paths] = process.argv.slice(2);
const answer = SHAPES[shape ?? ""];
if (!answer || paths.length === 0) throw new Error(`usage: bun bench/lib/http-floor.ts ${Object.keys(SHAPES).join("|")} SOCKET...`);
const clients = await Promise.all(paths.map(connectRaw));
const server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  async fetch(req) {
    return Response.json(await answer(clients, await req.json()));
  },
});
process.on("SIGTERM", () => {
  server.stop(true);
  for (const c of clients) c.socket.end();
  process.exit(0);
});
process.stdout.write(`listening on http://127.0.0.1:${server.port}\n`);
