/**
 * One hop of the raw relay chain, the floor of a chain of distinct processes:
 * a Bun process that reads msgpack call frames on a unix socket and passes
 * each to the next peer (decoded and encoded again, as a runtime hop would),
 * then passes the answer back; the last of the chain answers itself. No
 * runtime around it.
 *   bun bench/lib/relay-peer.ts /path/to.sock [/path/of/next.sock]
 */
import { decode, encode } from "@msgpack/msgpack";
import { rmSync } from "node:fs";
import type { Socket } from "bun";
import { FrameReader, framed, listenFrames } from "./raw-frames.ts";

type Call = { t: "call"; id: number; a: unknown[] };
const [at, nextPath] = process.argv.slice(2) as [string, string | undefined];
/** Calls passed on and not yet answered: the id given downstream → the caller's socket and its id. */
const waiting = new Map<number, { from: Socket<FrameReader>; id: number }>();
let nextId = 1;
let next: Socket<FrameReader> | null = null;
if (nextPath) {
  next = await Bun.connect<FrameReader>({
    unix: nextPath,
    socket: {
      open: (s) => void (s.data = new FrameReader()),
      data(s, chunk) {
        for (const body of s.data.push(chunk)) {
          const msg = decode(body) as { id: number; v: unknown };
          const w = waiting.get(msg.id)!;
          waiting.delete(msg.id);
          w.from.write(framed(encode({ t: "ok", id: w.id, v: msg.v })));
        }
      },
    },
  });
}
listenFrames(at, (s, body) => {
  const msg = decode(body) as Call;
  if (!next) return void s.write(framed(encode({ t: "ok", id: msg.id, v: msg.a[0] })));
  const id = nextId++;
  waiting.set(id, { from: s, id: msg.id });
  next.write(framed(encode({ ...msg, id })));
});
process.on("SIGTERM", () => {
  rmSync(at, { force: true });
  process.exit(0);
});
process.stdout.write("relay peer ready\n");
