import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { ClusterToken } from "../src/config/cluster-token.ts";
import { KeptRef } from "../src/wire/codec.ts";
import { frame } from "../src/runtime/channel/frame.ts";
import { encode } from "../src/wire/codec.ts";
import { linkStats, type LinkStats } from "../src/runtime/channel/link-auth.ts";
import { chunkStats } from "../src/runtime/channel/inline-chunks.ts";
import { parseAddress } from "../src/runtime/channel/transport.ts";
import { RemoteInvoker, STREAM_WINDOW } from "../src/runtime/remote-invoker.ts";
import type { ControlFromReplica, ControlToReplica, ReplicaSpec, RoutingTable } from "../src/runtime/channel/messages.ts";
import { loadGraph } from "../src/runtime/load-graph.ts";
import { ServeError } from "../src/error.ts";
import { BUN, CLI, EXAMPLES, ROOT, waitFor } from "./harness.ts";

const SECRET = "tcp-link-test-secret-0123456789abcdef";
const TOKEN = ClusterToken.from(SECRET);
const PEER = join(ROOT, "test/fixtures/tcp-peer.ts");

interface Peer {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  address: string;
}

/** Starts a peer process listening on 127.0.0.1 (any port) and reads the address it bound. */
async function startPeer(name: string): Promise<Peer> {
  const proc = Bun.spawn([BUN, PEER, name, "tcp://127.0.0.1:0"], {
    env: { ...process.env, SERVE_BIN_CLUSTER_TOKEN: SECRET, SERVE_BIN_CLUSTER_TOKEN_FILE: "" },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  let out = "";
  const reader = proc.stdout.getReader();
  const dec = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`peer ${name} exited before it listened: ${out}${await new Response(proc.stderr).text()}`);
    out += dec.decode(value);
    const m = /tcp peer ready (\S+)/.exec(out);
    if (m) {
      reader.releaseLock();
      return { proc, address: m[1]! };
    }
  }
}

const table = (version: number, peers: Record<string, Peer>): RoutingTable => ({
  version,
  deployments: Object.fromEntries(
    Object.entries(peers).map(([name, p]) => [name, { replicas: [{ id: `${name}#0`, socket: p.address }], maxOngoingRequests: 1000, maxQueuedRequests: -1 }]),
  ),
});

function tcpOf(p: Peer): { host: string; port: number } {
  const a = parseAddress(p.address);
  if (a.kind !== "tcp") throw new Error(`${p.address} is not a TCP address`);
  return a;
}

function invokerFor(peers: Record<string, Peer>, token?: ClusterToken): RemoteInvoker {
  const inv = new RemoteInvoker({}, { token });
  inv.update(table(1, peers));
  return inv;
}

describe("TCP links between processes", () => {
  let a: Peer;
  let b: Peer;
  let inv: RemoteInvoker;
  const statsOf = async (peer: string) => (await inv.call(peer, "stats", [])) as LinkStats & { chunks: ReturnType<typeof chunkStats> };

  beforeAll(async () => {
    [a, b] = await Promise.all([startPeer("A"), startPeer("B")]);
    inv = invokerFor({ A: a, B: b }, TOKEN);
  });
  afterAll(async () => {
    inv?.close();
    for (const p of [a, b]) {
      if (!p) continue;
      p.proc.kill("SIGTERM");
      expect(await p.proc.exited).toBe(0);
    }
  });

  it("carries calls and their values both ways over one authenticated connection per caller and callee", async () => {
    const value = { n: 10n, when: new Date(0), nothing: undefined, set: new Set([1, 2]), bytes: new Uint8Array([1, 2, 3]), text: "héllo" };
    expect(await inv.call("A", "echo", [value])).toEqual(value);
    const many = await Promise.all(Array.from({ length: 200 }, (_, i) => inv.call("A", "echo", [i])));
    expect(many).toEqual(Array.from({ length: 200 }, (_, i) => i));
    expect((await statsOf("A")).accepted).toBe(1);
  });

  it("refuses a caller with the wrong token, and the callee counts it", async () => {
    const before = (await statsOf("A")).refused;
    const dialBefore = linkStats().dialRefused;
    const wrong = invokerFor({ A: a }, ClusterToken.from("not-the-cluster-secret-at-all"));
    const err = await wrong.call("A", "echo", [1]).catch((e: unknown) => e);
    wrong.close();
    expect(err).toBeInstanceOf(ServeError);
    expect((err as ServeError).code).toBe("unavailable");
    expect((err as ServeError).message).toContain("does not know this cluster's token");
    // The dialer checks the callee's proof first and hangs up: both sides count the failed link.
    expect((await statsOf("A")).refused).toBe(before + 1);
    expect(linkStats().dialRefused).toBe(dialBefore + 1);
  });

  it("refuses a caller without a token, before anything reaches the callee", async () => {
    const none = invokerFor({ A: a });
    const err = (await none.call("A", "echo", [1]).catch((e: unknown) => e)) as ServeError;
    none.close();
    expect(err).toBeInstanceOf(ServeError);
    expect(err.code).toBe("unavailable");
    expect(err.message).toContain("TCP links need the cluster token; set SERVE_BIN_CLUSTER_TOKEN");
  });

  it("closes a connection that sends frames without the handshake, answers nothing, and counts it", async () => {
    const before = (await statsOf("B")).refusedBy["bad-hello"];
    const { host, port } = tcpOf(b);
    let received = 0;
    let closed = false;
    const sock = await Bun.connect({
      hostname: host,
      port,
      socket: {
        data: (_s, d) => void (received += d.byteLength),
        close: () => void (closed = true),
      },
    });
    // Today's unix-socket framing: a call as an unauthenticated peer would send it.
    sock.write(frame(encode({ t: "call", id: 1, m: "echo", a: ["sneaky"], r: "x" })));
    await waitFor(() => closed, "the callee to close the unauthenticated connection");
    expect(received).toBe(0);
    expect((await statsOf("B")).refusedBy["bad-hello"]).toBe(before + 1);
  });

  it("refuses a handshake whose proof was made without the token, and counts it as a bad proof", async () => {
    const before = (await statsOf("B")).refusedBy["bad-proof"];
    const { host, port } = tcpOf(b);
    let got = new Uint8Array(0);
    let closed = false;
    const sock = await Bun.connect({
      hostname: host,
      port,
      socket: {
        data: (_s, d) => void (got = new Uint8Array([...got, ...d])),
        close: () => void (closed = true),
      },
    });
    const hello = new Uint8Array(36);
    hello.set([0x53, 0x42, 0x4c, 0x31]);
    sock.write(hello);
    await waitFor(() => got.byteLength >= 68, "the callee's challenge");
    sock.write(crypto.getRandomValues(new Uint8Array(32))); // a guess instead of the HMAC
    await waitFor(() => closed, "the callee to close the link");
    expect(got.byteLength).toBe(68); // the challenge, and no "accepted" byte
    expect((await statsOf("B")).refusedBy["bad-proof"]).toBe(before + 1);
  });

  it("closes a connection that never finishes the handshake, and counts it", async () => {
    const before = (await statsOf("B")).refusedBy.timeout;
    const { host, port } = tcpOf(b);
    let closed = false;
    const sock = await Bun.connect({ hostname: host, port, socket: { data() {}, close: () => void (closed = true) } });
    sock.write(new Uint8Array([0x53, 0x42, 0x4c, 0x31])); // the magic, then silence
    await waitFor(() => closed, "the callee to give up on the silent peer", 20_000);
    expect((await statsOf("B")).refusedBy.timeout).toBe(before + 1);
  });

  it("sends a 16 MiB Float32Array across and back intact", async () => {
    const x = Float32Array.from({ length: 4 << 20 }, (_, i) => (i % 1000) - 500.25);
    const peerBefore = (await statsOf("A")).chunks;
    const mine = chunkStats();
    const y = (await inv.call("A", "affine", [x])) as Float32Array;
    // Both ways as chunk frames through the connection (no shared memory across TCP), one value each.
    expect((await statsOf("A")).chunks).toEqual({ sent: peerBefore.sent + 1, sentBytes: peerBefore.sentBytes + x.byteLength, received: peerBefore.received + 1 });
    expect(chunkStats()).toEqual({ sent: mine.sent + 1, sentBytes: mine.sentBytes + x.byteLength, received: mine.received + 1 });
    expect(y).toBeInstanceOf(Float32Array);
    expect(y.length).toBe(x.length);
    const want = x.map((v) => v * 2 + 1);
    expect(Bun.hash(new Uint8Array(y.buffer, y.byteOffset, y.byteLength))).toBe(Bun.hash(new Uint8Array(want.buffer)));
  });

  it("forwards a response from one TCP peer to another: the consumer fetches it from the producer", async () => {
    const n = 1 << 19; // 2 MiB of float32: the fetch crosses the link in chunks too
    const ref = await inv.callKept("A", "ramp", [n]);
    expect(ref).toBeInstanceOf(KeptRef);
    expect(ref.socket).toBe(a.address);
    expect(await inv.call("B", "sum", [ref])).toBe((n * (n - 1)) / 2);
    inv.releaseKept(ref);
    const gone = (await inv.fetchKept(ref).catch((e: unknown) => e)) as ServeError;
    expect(gone.message).toContain("no longer kept");
  });

  it("streams with credits: the producer stays within the window until the consumer reads", async () => {
    const before = (await inv.call("A", "produced", [])) as number;
    const it = inv.stream("A", "count", [500]);
    const first = await it.next();
    expect(first).toEqual({ value: 0, done: false });
    await waitFor(async () => ((await inv.call("A", "produced", [])) as number) - before >= STREAM_WINDOW, "the producer to fill its window");
    // Another round trip: had credits not held it back, the generator would have run to its end by now.
    await inv.call("A", "noop", []);
    expect(((await inv.call("A", "produced", [])) as number) - before).toBeLessThanOrEqual(STREAM_WINDOW + 1);
    const rest: unknown[] = [];
    for await (const v of { [Symbol.asyncIterator]: () => it }) rest.push(v);
    expect([first.value, ...rest]).toEqual(Array.from({ length: 500 }, (_, i) => i));
  });
});

/** Starts `serve-bin replica` (from source) for a deployment of the tutorial, on a TCP address; its IPC messages go to `onMessage`. */
function startReplica(deployment: string, hash: string, env: Record<string, string>, onMessage: (m: ControlFromReplica) => void): Subprocess {
  const spec: ReplicaSpec = {
    app: "default",
    deployment,
    replicaId: `${deployment}#0`,
    modulePath: TUTORIAL,
    exportName: "default",
    hash,
    fileHash: "",
    socket: "tcp://127.0.0.1:0",
    maxOngoingRequests: 5,
    sharedMemory: { enabled: false, thresholdBytes: 16384, arenaBytes: 1 << 20, dir: "/dev/shm" },
  };
  const child = Bun.spawn([BUN, CLI, "replica", spec.replicaId], {
    env: { ...process.env, SERVE_BIN_CLUSTER_TOKEN: "", SERVE_BIN_CLUSTER_TOKEN_FILE: "", ...env },
    stdio: ["ignore", "inherit", "pipe"],
    ipc: onMessage,
  });
  child.send({ t: "start", spec }); // the spec travels over IPC, never on the command line
  return child;
}

const TUTORIAL = join(EXAMPLES, "tutorial/graph.ts");

describe("serve-bin replica on a TCP address", () => {
  let hash: string;
  beforeAll(async () => {
    hash = (await loadGraph(TUTORIAL, "default")).ir.hash;
  });

  it("serves the tutorial's Combiner over TCP, calling both Model replicas over TCP with its own handles", async () => {
    const ready = new Map<string, string>();
    const procs: Subprocess[] = [];
    const start = (deployment: string) => {
      const proc = startReplica(deployment, hash, { SERVE_BIN_CLUSTER_TOKEN: SECRET }, (msg) => {
        if (msg.t === "ready") ready.set(deployment, msg.socket);
      });
      procs.push(proc);
      return proc;
    };
    try {
      const combiner = start("Combiner");
      start("Model");
      start("Model_1");
      await waitFor(() => ready.size === 3, "three replicas to listen");
      for (const address of ready.values()) expect(address).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
      const route = (name: string) => ({ replicas: [{ id: `${name}#0`, socket: ready.get(name)! }], maxOngoingRequests: 5, maxQueuedRequests: -1 });
      const routes: RoutingTable = { version: 1, deployments: { Combiner: route("Combiner"), Model: route("Model"), Model_1: route("Model_1") } };
      combiner.send({ t: "routes", table: routes } satisfies ControlToReplica);
      const inv = new RemoteInvoker({}, { token: TOKEN });
      inv.update(routes);
      try {
        expect(await inv.call("Combiner", "run", [5, 1.5, "sum"])).toBe("sum(['(1 * (5 + 1.5))', '(2 * (5 + 1.5))'])");
      } finally {
        inv.close();
      }
    } finally {
      for (const p of procs) p.kill("SIGTERM");
      expect(await Promise.all(procs.map((p) => p.exited))).toEqual([0, 0, 0]);
    }
  });

  it("fails to start without a cluster token, telling its server why", async () => {
    let failed: string | undefined;
    const proc = startReplica("Model", hash, {}, (msg) => {
      if (msg.t === "failed") failed = msg.error.message;
    });
    expect(await proc.exited).toBe(2); // a config error, as the CLI reports those
    expect(failed).toContain("TCP links need the cluster token; set SERVE_BIN_CLUSTER_TOKEN or SERVE_BIN_CLUSTER_TOKEN_FILE");
  });
});
