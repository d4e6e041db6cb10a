/**
 * A raw driver process of a floor: reads msgpack call frames on a unix socket
 * and answers each by calls to other raw processes in one of
 * bench/lib/floor-shapes.ts's shapes, as a DAGDriver replica does behind
 * serve-bin's main process. No runtime around it.
 *   bun bench/lib/driver-peer.ts /path/to.sock chain|fanout|relay|diamond PEER.sock...
 */
import { decode, encode } from "@msgpack/msgpack";
import { rmSync } from "node:fs";
import { floorShape } from "./floor-shapes.ts";
import { connectRaw } from "./raw-floor.ts";
import { framed, listenFrames } from "./raw-frames.ts";

const [at, shape, ...paths] = process.argv.slice(2) as [string, string, ...string[]];
const answer = floorShape(shape, "bun bench/lib/driver-peer.ts SOCKET SHAPE PEER...");
if (!at || paths.length === 0) throw new Error("driver-peer: give its socket, a shape and the sockets of the peers it calls");
const clients = await Promise.all(paths.map(connectRaw));
listenFrames(at, (s, body) => {
  const msg = decode(body) as { id: number; a: [unknown] };
  void answer(clients, msg.a[0]).then((v) => s.write(framed(encode({ t: "ok", id: msg.id, v }))));
});
process.on("SIGTERM", () => {
  rmSync(at, { force: true });
  for (const c of clients) c.socket.end();
  process.exit(0);
});
process.stdout.write("driver peer ready\n");
