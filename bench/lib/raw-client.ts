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

/**
 * Starts an echo peer process and connects to it: over a unix socket, or over
 * TCP when `tcpHost` is given (the peer listens there; `wrap` prefixes its
 * command, e.g. with `ip netns exec NS` to run it in another network namespace).
 */
export async function startRawPeer(procs: ProcessSet, tcpHost?: string, wrap: string[] = []): Promise<RawPeer> {
  const dir = mkdtempSync(join(tmpdir(), "sb-bench-raw-"));
  const path = join(dir, "echo.sock");
  const peer: Tracked = procs.spawn("echo peer", [...wrap, BUN, join(LIB, "echo-peer.ts"), tcpHost ? `tcp://${tcpHost}:0` : path]);
  const ready = await peer.waitFor(/echo peer ready(?: port (\d+))?/, 10_000);
  let client!: RawClient;
  const socket = {
    open(s: Socket<FrameReader>) {
      if (tcpHost) s.setNoDelay(true);
      s.data = new FrameReader();
    },
    data(_s: Socket<FrameReader>, chunk: Uint8Array) {
      client.onData(chunk);
    },
  };
  const conn = await (tcpHost
    ? Bun.connect<FrameReader>({ hostname: tcpHost, port: Number(ready[1]), socket })
    : Bun.connect<FrameReader>({ unix: path, socket }));
  client = new RawClient(conn);
  return {
    client,
    async close() {
      conn.end();
      await peer.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
