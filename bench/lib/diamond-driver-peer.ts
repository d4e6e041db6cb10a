/**
 * The raw driver of the diamond's floor (bench/lib/diamond-floor.ts): reads
 * msgpack call frames on a unix socket, runs the diamond over the three
 * function peers for each, and answers. No runtime around it.
 *   bun bench/lib/diamond-driver-peer.ts /path/to.sock MODEL1 MODEL2 ENSEMBLE
 */
import { decode, encode } from "@msgpack/msgpack";
import { rmSync } from "node:fs";
import { diamondOver } from "./diamond-floor.ts";
import { connectRaw } from "./raw-floor.ts";
import { FrameReader, framed } from "./raw-frames.ts";

const [at, ...paths] = process.argv.slice(2) as [string, ...string[]];
if (paths.length !== 3) throw new Error("usage: bun bench/lib/diamond-driver-peer.ts SOCKET MODEL1 MODEL2 ENSEMBLE");
const clients = await Promise.all(paths.map(connectRaw));
rmSync(at, { force: true });
Bun.listen<FrameReader>({
  unix: at,
  socket: {
    open: (s) => void (s.data = new FrameReader()),
    data(s, chunk) {
      for (const body of s.data.push(chunk)) {
        const msg = decode(body) as { id: number; a: [[number, number, number]] };
        void diamondOver(clients, msg.a[0]).then((v) => s.write(framed(encode({ t: "ok", id: msg.id, v }))));
      }
    },
  },
});
process.on("SIGTERM", () => {
  rmSync(at, { force: true });
  process.exit(0);
});
process.stdout.write("diamond driver ready\n");
