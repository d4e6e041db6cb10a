/**
 * The floor of a hop: a Bun process answering msgpack frames on a unix
 * socket, with no runtime around it. Reads `{ t: "call", id, a }` frames
 * (4-byte little-endian length + msgpack body) and answers `{ t: "ok", id, v }`.
 *   bun bench/lib/echo-peer.ts /path/to.sock
 */
import { decode, encode } from "@msgpack/msgpack";
import { rmSync } from "node:fs";
import { FrameReader, framed } from "./raw-frames.ts";

const path = process.argv[2]!;
rmSync(path, { force: true });
Bun.listen<FrameReader>({
  unix: path,
  socket: {
    open(s) {
      s.data = new FrameReader();
    },
    data(s, chunk) {
      for (const body of s.data.push(chunk)) {
        const msg = decode(body) as { id: number; a: unknown[] };
        s.write(framed(encode({ t: "ok", id: msg.id, v: msg.a[0] })));
      }
    },
  },
});
process.on("SIGTERM", () => {
  rmSync(path, { force: true });
  process.exit(0);
});
process.stdout.write("echo peer ready\n");
