/**
 * The floor of a hop: a Bun process answering msgpack frames on a unix
 * socket or a TCP port, with no runtime around it. Reads `{ t: "call", id, a }`
 * frames (4-byte little-endian length + msgpack body) and answers
 * `{ t: "ok", id, v }`. On TCP (Nagle off, as the runtime's links) it prints
 * the port it bound. With a function name it answers that function of the
 * argument instead: one of the REP diamond's (bench/fixtures/diamond-fns.ts),
 * for the diamond's floor (bench/lib/diamond-floor.ts), or one of the
 * tutorial's steps, after its sleep (bench/lib/tutorial-steps.ts), for the
 * tutorial's floor (bench/lib/tutorial-floor.ts).
 *   bun bench/lib/echo-peer.ts /path/to.sock
 *   bun bench/lib/echo-peer.ts tcp://127.0.0.1:0
 *   bun bench/lib/echo-peer.ts /path/to.sock model1|model2|ensemble
 *   bun bench/lib/echo-peer.ts /path/to.sock preprocessor|avgPreprocessor|Model|Model_1
 */
import { decode, encode } from "@msgpack/msgpack";
import { rmSync } from "node:fs";
import type { Socket } from "bun";
import { ensemble, ModelImpl } from "../fixtures/diamond-fns.ts";
import { FrameReader, framed } from "./raw-frames.ts";
import { avgPreprocessor, model, preprocessor } from "./tutorial-steps.ts";

const models = [new ModelImpl(1), new ModelImpl(2)];
const FUNCTIONS: Record<string, (x: any) => unknown> = {
  model1: (x: number) => models[0]!.forward(x),
  model2: (x: number) => models[1]!.forward(x),
  ensemble: (abc: [number, number, number]) => ensemble(...abc),
  preprocessor,
  avgPreprocessor,
  Model: model(1),
  Model_1: model(2),
};
const [at, fnName] = process.argv.slice(2) as [string, string | undefined];
if (fnName !== undefined && !FUNCTIONS[fnName]) throw new Error(`unknown function ${fnName}; one of ${Object.keys(FUNCTIONS).join(", ")}`);
const fn = fnName ? FUNCTIONS[fnName]! : null;
const tcp = /^tcp:\/\/(.+):(\d+)$/.exec(at);
const socket = {
  open(s: Socket<FrameReader>) {
    if (tcp) s.setNoDelay(true);
    s.data = new FrameReader();
  },
  data(s: Socket<FrameReader>, chunk: Uint8Array) {
    for (const body of s.data.push(chunk)) {
      const msg = decode(body) as { id: number; a: unknown[] };
      const v = fn ? fn(msg.a[0]) : msg.a[0];
      // A closure only for a step that sleeps (the tutorial's): the echo and the diamond's functions are floors under load.
      if (v instanceof Promise) void v.then((w) => answer(s, msg.id, w));
      else answer(s, msg.id, v);
    }
  },
};
function answer(s: Socket<FrameReader>, id: number, v: unknown): void {
  s.write(framed(encode({ t: "ok", id, v })));
}

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
