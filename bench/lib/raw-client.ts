/** The caller's side of the raw baseline: one socket to an echo peer, calls matched by id. */
import { decode, encode } from "@msgpack/msgpack";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Socket } from "bun";
import { BUN, LIB } from "./paths.ts";
import type { ProcessSet, Tracked } from "./procs.ts";
import { FrameReader, framed } from "./raw-frames.ts";

export interface RawPeer {
  client: RawClient;
  close(): Promise<void>;
}

export class RawClient {
  #next = 1;
  readonly #pending = new Map<number, (v: unknown) => void>();
  readonly #requestId = crypto.randomUUID();
  constructor(readonly socket: Socket<FrameReader>) {}

  onData(chunk: Uint8Array): void {
    for (const body of this.socket.data.push(chunk)) {
      const msg = decode(body) as { id: number; v: unknown };
      const r = this.#pending.get(msg.id);
      this.#pending.delete(msg.id);
      r?.(msg.v);
    }
  }

  /** One round trip with a call message shaped like the runtime's. */
  call(x: unknown): Promise<unknown> {
    const id = this.#next++;
    return new Promise((resolve) => {
      this.#pending.set(id, resolve);
      this.socket.write(framed(encode({ t: "call", id, m: null, a: [x], r: this.#requestId })));
    });
  }
}

/** Starts an echo peer process and connects to it. */
export async function startRawPeer(procs: ProcessSet): Promise<RawPeer> {
  const dir = mkdtempSync(join(tmpdir(), "sb-bench-raw-"));
  const path = join(dir, "echo.sock");
  const peer: Tracked = procs.spawn("echo peer", [BUN, join(LIB, "echo-peer.ts"), path]);
  await peer.waitFor(/echo peer ready/, 10_000);
  let client!: RawClient;
  const socket = await Bun.connect<FrameReader>({
    unix: path,
    socket: {
      open(s) {
        s.data = new FrameReader();
      },
      data(_s, chunk) {
        client.onData(chunk);
      },
    },
  });
  client = new RawClient(socket);
  return {
    client,
    async close() {
      socket.end();
      await peer.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
