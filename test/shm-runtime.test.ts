import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { alive, childPids, ROOT, startServer, tempDir, waitFor, leftovers, type RunningServer, type TempDir } from "./harness.ts";

const GRAPH = join(ROOT, "test/fixtures/shm-graph.ts");
const T = 64 * 1024;
const MiB = 1 << 20;

/** Writes a config serving the fixture graph at / with these shared-memory settings. */
function configFile(dir: string, sharedMemory: { enabled: boolean; thresholdBytes?: number; arenaBytes?: number }): string {
  const path = join(dir, `shm-${sharedMemory.enabled ? "on" : "off"}.json`);
  writeFileSync(path, JSON.stringify({ sharedMemory: { thresholdBytes: T, arenaBytes: 128 * MiB, ...sharedMemory }, applications: [{ name: "default", routePrefix: "/", importPath: GRAPH }] }));
  return path;
}

function noise(n: number, seed: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n);
  let x = seed | 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x;
  }
  return out;
}

/** What the /f32 chain computes, in float32 as the replicas do. */
function scaleThenOffset(body: Uint8Array): Uint8Array {
  const x = new Float32Array(body.slice().buffer);
  for (let i = 0; i < x.length; i++) {
    x[i]! *= 2;
    x[i]! += 1;
  }
  return new Uint8Array(x.buffer);
}
const xorThenReverse = (body: Uint8Array) => body.map((b) => b ^ 0x5a).reverse();

/** 16 MiB of float32 values (finite ones, so the arithmetic is ordinary). */
const F32_BODY = new Uint8Array(Float32Array.from({ length: 4 * MiB }, (_, i) => (i % 1000) - 500.25).buffer);
const SIZES = [0, 100, T - 1, T, T + 1, 300_000, MiB, 4 * MiB];

/** Status, length and checksum of the answer to a POST of `body`. */
async function post(url: string, body: Uint8Array<ArrayBuffer>): Promise<{ status: number; hash: string; length: number }> {
  const res = await fetch(url, { method: "POST", body, headers: { "content-type": "application/octet-stream" } });
  const bytes = new Uint8Array(await res.arrayBuffer());
  return { status: res.status, hash: Bun.hash(bytes).toString(16), length: bytes.byteLength };
}
const expected = (bytes: Uint8Array) => ({ status: 200, hash: Bun.hash(bytes).toString(16), length: bytes.byteLength });

type Stats = Record<"scale" | "offset" | "xor" | "reverse", { transfers: number; bytes: number; fallbacks: number }>;

/** 200 requests at once, sizes mixed around the threshold and up to 4 MiB; the indexes of wrong answers. */
async function mixedLoad(url: string): Promise<number[]> {
  const bodies = Array.from({ length: 200 }, (_, i) => noise(SIZES[i % SIZES.length]!, i + 1));
  const answers = await Promise.all(bodies.map((b) => post(`${url}/bytes`, b)));
  return answers.flatMap((a, i) => (Bun.deepEquals(a, expected(xorThenReverse(bodies[i]!))) ? [] : [i]));
}

function shmFiles(pid: number): string[] {
  return readdirSync("/dev/shm").filter((n) => n.startsWith(`serve-bin-${pid}-`));
}

/** The pid that owns an arena file: serve-bin-<server pid>-<owner pid>-<random>. */
const ownerOf = (name: string) => Number(name.split("-")[3]);

/** Bytes of /dev/shm an arena file really holds (its pages come into being as blocks are written). */


describe("a served graph with shared memory on", () => {
  let dir: TempDir;
  let server: RunningServer;
  beforeAll(async () => {
    dir = tempDir();
    server = await startServer(configFile(dir.path, { enabled: true }), { args: ["--app-dir", ROOT] });
  });
  afterAll(async () => {
    await server?.stop("SIGKILL");
    await dir?.[Symbol.asyncDispose]();
  });

  it("carries a 16 MiB Float32Array through a 2-stage chain byte for byte", async () => {
    expect(await post(`${server.url}/f32`, F32_BODY)).toEqual(expected(scaleThenOffset(F32_BODY)));
  });

  it("passes a 16 MiB request body from the proxy to the ingress through the server process's arena", async () => {
    // Counted by the server itself: the arena's pages are given back once idle (1 s), so its size says nothing afterwards.
    const sent = async () => {
      const text = await (await fetch(`${server.adminUrl}/metrics`)).text();
      return Number(/^serve_bin_shm_bytes_total\{process="server"\} (\d+)$/m.exec(text)![1]);
    };
    const before = await sent();
    expect(await post(`${server.url}/f32`, F32_BODY)).toEqual(expected(scaleThenOffset(F32_BODY)));
    expect((await sent()) - before).toBeGreaterThanOrEqual(16 * MiB);
    expect(shmFiles(server.proc.pid).filter((n) => ownerOf(n) === server.proc.pid)).toHaveLength(1);
  });

  it("answers 200 concurrent requests of mixed sizes through binaryRequest byte for byte", async () => {
    expect(await mixedLoad(server.url)).toEqual([]);
  });

  it("sent the large values between replicas through shared memory", async () => {
    const stats = (await (await fetch(`${server.url}/stats`)).json()) as Stats;
    expect(stats.scale.transfers).toBeGreaterThanOrEqual(1);
    expect(stats.offset.bytes).toBeGreaterThanOrEqual(16 * MiB);
    expect(stats.xor.transfers + stats.xor.fallbacks).toEqual(SIZES.filter((n) => n >= T).length * 25);
  });

  it("removes the arena of a replica killed with SIGKILL while the server runs", async () => {
    const pid = server.proc.pid;
    const victim = shmFiles(pid).find((n) => ownerOf(n) !== pid)!;
    process.kill(ownerOf(victim), "SIGKILL");
    await waitFor(() => !shmFiles(pid).includes(victim), "the server to remove the dead replica's arena", 30_000);
    await waitFor(async () => (await fetch(`${server.url}/-/healthz`)).ok && shmFiles(pid).length >= 7, "the replica to be replaced");
    expect(await post(`${server.url}/f32`, F32_BODY)).toEqual(expected(scaleThenOffset(F32_BODY)));
  });

  it("leaves no file in /dev/shm after a SIGTERM shutdown", async () => {
    const pid = server.proc.pid;
    expect(shmFiles(pid).length).toBeGreaterThanOrEqual(7); // the server and its six replicas
    expect(await server.stop()).toEqual(0);
    expect(leftovers(pid)).toEqual([]);
  });
});

describe("a served graph with sharedMemory.enabled false", () => {
  it("gives the same answers, with everything inline and no shared-memory file", async () => {
    await using dir = tempDir();
    await using server = await startServer(configFile(dir.path, { enabled: false }), { args: ["--app-dir", ROOT] });
    expect(await post(`${server.url}/f32`, F32_BODY)).toEqual(expected(scaleThenOffset(F32_BODY)));
    expect(await mixedLoad(server.url)).toEqual([]);
    const stats = (await (await fetch(`${server.url}/stats`)).json()) as Stats;
    const zero = { transfers: 0, bytes: 0, fallbacks: 0, zeroCopy: 0, forwards: 0, views: 0, copies: 0 };
    expect(stats).toEqual({ scale: zero, offset: zero, xor: zero, reverse: zero });
    expect(shmFiles(server.proc.pid)).toEqual([]);
    const pid = server.proc.pid;
    expect(await server.stop()).toEqual(0);
    expect(leftovers(pid)).toEqual([]);
  });
});

describe("after kill -9 of a server", () => {
  it("its replicas remove their own arenas as they exit, and the next start removes the server's", async () => {
    await using dir = tempDir();
    const first = await startServer(configFile(dir.path, { enabled: true }), { args: ["--app-dir", ROOT] });
    const pid = first.proc.pid;
    expect(await post(`${first.url}/f32`, F32_BODY)).toEqual(expected(scaleThenOffset(F32_BODY)));
    const replicas = childPids(pid);
    expect(shmFiles(pid).length).toBeGreaterThanOrEqual(7);
    await first.stop("SIGKILL");
    await waitFor(() => replicas.every((r) => !alive(r)), "the replicas to exit after losing the server");
    // No replica's arena is left: only the killed server's own, for the sweep. Another test file's server that starts
    // meanwhile may have swept it already (every start sweeps /dev/shm of dead servers), so it may be gone too.
    expect(shmFiles(pid).map(ownerOf).filter((owner) => owner !== pid)).toEqual([]);
    expect(shmFiles(pid).length).toBeLessThanOrEqual(1);
    await using second = await startServer(configFile(dir.path, { enabled: true }), { args: ["--app-dir", ROOT] });
    expect(leftovers(pid)).toEqual([]);
    expect(await second.stop()).toEqual(0);
  });
});
