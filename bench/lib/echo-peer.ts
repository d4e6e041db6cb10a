/**
 * The floor of a hop: a Bun process answering msgpack frames on a unix
 * socket or a TCP port, with no runtime around it. Reads `{ t: "call", id, a }`
 * frames (4-byte little-endian length + msgpack body) and answers
 * `{ t: "ok", id, v }`. On TCP (Nagle off, as the runtime's links) it prints
 * the port it bound.
 *   bun bench/lib/echo-peer.ts /path/to.sock
 *   bun bench/lib/echo-peer.ts tcp://127.0.0.1:0
 */
import { decode, encode } from "@msgpack/msgpack";
import { rmSync } from "node:fs";
import type { Socket } from "bun";
import { FrameReader, framed } from "./raw-frames.ts";

const at = process.argv[2]!;
const tcp = /^tcp:\/\/(.+):(\d+)$/.exec(at);
const socket = {
  open(s: Socket<FrameReader>) {
    if (tcp) s.setNoDelay(true);
    s.data = new FrameReader();
  },
  data(s: Socket<FrameReader>, chunk: Uint8Array) {
    for (const body of s.data.push(chunk)) {
      const msg = decode(body) as { id: number; a: unknown[] };
      s.write(framed(encode({ t: "ok", id: msg.id, v: msg.a[0] })));
    }
  },
};
let ready = "echo peer ready";
if (tcp) ready += ` port ${Bun.listen<FrameReader>({ hostname: tcp[1]!, port: Number(tcp[2]), socket }).port}`;
else {
  rmSync(at, { force: true });
  Bun.listen<FrameReader>({ unix: at, socket });
}
process.on("SIGTERM", () => {
  if (!tcp) rmSync(at, { force: true });
  process.exit(0);
});
process.stdout.write(`${ready}\n`);
