/**
 * Forwarded responses (SPEC §1): `b.remote(a.remote(x))` through handles in a
 * replica sends a's result from a's process to b's, not through the caller.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT, startServer, tempDir, waitFor, type RunningServer, type TempDir } from "./harness.ts";
import { ReplicaServer } from "../src/runtime/replica/server.ts";
import { KeptRef } from "../src/wire/codec.ts";
import type { Connection } from "../src/runtime/channel/connection.ts";
import type { DataMessage } from "../src/runtime/channel/messages.ts";
import type { Callable } from "../src/graph/instantiate.ts";
import { createHandle } from "../src/api/handle.ts";
import type { Invoker } from "../src/api/invoker.ts";
import { ServeError } from "../src/error.ts";

const GRAPH = join(ROOT, "test/fixtures/forwarding.ts");
const MiB = 1 << 20;
const N = 4 * MiB; // floats: 16 MiB

/** What the fixture's driver sends, and what each stage makes of it, as the replicas compute it in float32. */
const x = Float32Array.from({ length: N }, (_, i) => (i % 1000) - 500.25);
const scaled = x.map((v) => v * 2);
const chained = scaled.map((v) => v + 1);
const hash = (a: Float32Array) => Bun.hash(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)).toString(16);

type Kept = Record<"scale" | "offset" | "thrower", { now: number; stored: number; fetched: number }>;

describe("a response passed un-awaited to another .remote() in a served graph", () => {
  let dir: TempDir;
  let server: RunningServer;
  const post = async (path: string) => {
    const res = await fetch(`${server.url}${path}`, { method: "POST" });
    return { status: res.status, body: await res.text() };
  };
  const kept = async () => (await (await fetch(`${server.url}/kept`)).json()) as Kept;
  beforeAll(async () => {
    dir = tempDir();
    const config = join(dir.path, "forwarding.json");
    writeFileSync(config, JSON.stringify({ sharedMemory: { enabled: true, thresholdBytes: 16 * 1024, arenaBytes: 128 * MiB }, applications: [{ name: "default", routePrefix: "/", importPath: GRAPH }] }));
    server = await startServer(config, { args: ["--app-dir", ROOT] });
  });
  afterAll(async () => {
    await server?.stop("SIGKILL");
    await dir?.[Symbol.asyncDispose]();
  });

  it("carries a 16 MiB Float32Array through a 2-stage chain byte for byte, without passing it through the caller", async () => {
    for (let i = 0; i < 3; i++) {
      const res = await post("/chain");
      expect(res.status).toEqual(200);
      const out = JSON.parse(res.body) as { hash: string; transfers: number; bytes: number };
      expect(out.hash).toEqual(hash(chained));
      // The caller's own arena carried x to stage 1 once, and nothing else: stage 1's
      // result went from stage 1's process to stage 2's (routed back through the
      // caller it would be a second 16 MiB transfer).
      expect({ transfers: out.transfers, bytes: out.bytes }).toEqual({ transfers: 1, bytes: 16 * MiB });
    }
    const k = await kept();
    expect(k.scale.stored).toBeGreaterThanOrEqual(3);
    expect(k.scale.fetched).toBeGreaterThanOrEqual(3); // stage 2 fetched each from stage 1
  });

  it("gives the inner value too when it is awaited before the outer call completes", async () => {
    const res = await post("/await-before");
    expect(res.status).toEqual(200);
    expect(JSON.parse(res.body)).toEqual({ hash: hash(chained), inner: hash(scaled) });
  });

  it("gives the inner value when it is awaited right after the outer call (await b.remote(r); await r)", async () => {
    const res = await post("/await-after");
    expect(res.status).toEqual(200);
    const out = JSON.parse(res.body) as { hash: string; error: unknown; inner?: string };
    expect({ hash: out.hash, error: out.error }).toEqual({ hash: hash(chained), error: null });
  });

  it("fails awaiting the inner response after it was released, saying where it went and what to do", async () => {
    const res = await post("/await-later");
    expect(res.status).toEqual(200);
    const out = JSON.parse(res.body) as { hash: string; error: { message: string; status: number } | null };
    expect(out.hash).toEqual(hash(chained));
    expect(out.error?.message).toMatch(/result of Scale was forwarded to Offset and released/);
    expect(out.error?.message).toMatch(/await it before passing it on/);
    expect(out.error?.status).toEqual(500);
  });

  it("fails the outer call with the inner call's error when the inner call throws", async () => {
    const res = await post("/throws");
    expect(res.status).toEqual(500);
    expect(res.body).toMatch(/Thrower/);
    expect(res.body).toMatch(/Thrower refuses on purpose/);
    expect(res.body).not.toMatch(/Offset takes/);
  });

  it("leaves no kept value behind once the outer calls completed", async () => {
    await waitFor(async () => {
      const k = await kept();
      return k.scale.now === 0 && k.offset.now === 0 && k.thrower.now === 0;
    }, "every kept value to be released", 5_000);
    const k = await kept();
    expect(k.scale.stored).toBeGreaterThanOrEqual(5);
    expect(k.thrower.stored).toEqual(0); // a failed call keeps nothing
  });

  it("printed no unhandled rejection", () => {
    expect(server.output()).not.toMatch(/unhandled rejection/);
  });
});

describe("ReplicaServer keeping results", () => {
  const callable = { deployment: { name: "P" }, instance: null, resolve: () => (v: unknown) => v } as unknown as Callable;
  function conn() {
    const sent: DataMessage[] = [];
    return { sent, conn: { send: (m: DataMessage) => sent.push(m) } as unknown as Connection };
  }
  const answer = async (sent: DataMessage[], id: number) => waitFor(() => sent.find((m) => m.id === id), `an answer to ${id}`, 2_000, 1);

  it("answers a kept call with a KeptRef, serves fetches, and drops the value on release", async () => {
    const server = new ReplicaServer(callable, 5, { socket: "/tmp/p.sock", fetch: async () => undefined });
    const { sent, conn: c } = conn();
    server.handle({ t: "call", id: 1, m: null, a: [new Float32Array([1, 2])], r: "r1", k: true }, c);
    const ok = (await answer(sent, 1)) as Extract<DataMessage, { t: "ok" }>;
    expect(ok.v).toBeInstanceOf(KeptRef);
    const ref = ok.v as KeptRef;
    expect({ socket: ref.socket, deployment: ref.deployment }).toEqual({ socket: "/tmp/p.sock", deployment: "P" });
    expect(server.keptCount).toEqual(1);
    server.handle({ t: "fetch", id: 2, k: ref.token }, c);
    server.handle({ t: "fetch", id: 3, k: ref.token }, c);
    expect(await answer(sent, 2)).toEqual({ t: "ok", id: 2, v: new Float32Array([1, 2]) });
    expect(await answer(sent, 3)).toEqual({ t: "ok", id: 3, v: new Float32Array([1, 2]) });
    // A call on this replica given its own reference takes the value without a fetch.
    server.handle({ t: "call", id: 4, m: null, a: [ref], r: "r2" }, c);
    expect(await answer(sent, 4)).toEqual({ t: "ok", id: 4, v: new Float32Array([1, 2]) });
    server.handle({ t: "release", id: 0, k: ref.token }, c);
    expect(server.keptCount).toEqual(0);
    server.handle({ t: "fetch", id: 5, k: ref.token }, c);
    const gone = (await answer(sent, 5)) as Extract<DataMessage, { t: "err" }>;
    expect(gone.t).toEqual("err");
    expect(gone.e.code).toEqual("unavailable");
  });

  it("drops a kept value nobody released once its TTL passed", async () => {
    const server = new ReplicaServer(callable, 5, { socket: "/tmp/p.sock", fetch: async () => undefined, ttlMs: 30 });
    const { sent, conn: c } = conn();
    server.handle({ t: "call", id: 1, m: null, a: ["v"], r: "r1", k: true }, c);
    await answer(sent, 1);
    expect(server.keptCount).toEqual(1);
    await waitFor(() => server.keptCount === 0, "the TTL to drop the kept value", 2_000, 5);
  });

  it("fails a call whose forwarded argument's producer is gone with that error", async () => {
    const server = new ReplicaServer(callable, 5, {
      socket: "/tmp/p.sock",
      fetch: async (ref) => {
        throw new ServeError("unavailable", `replica ${ref.socket} of ${ref.deployment} went away`, { deployment: ref.deployment });
      },
    });
    const { sent, conn: c } = conn();
    server.handle({ t: "call", id: 1, m: null, a: [new KeptRef("/tmp/q.sock", "t", "Q")], r: "r1" }, c);
    const err = (await answer(sent, 1)) as Extract<DataMessage, { t: "err" }>;
    expect(err.e.code).toEqual("unavailable");
    expect(err.e.message).toMatch(/Q went away/);
  });
});

describe("handles with a forwarding invoker (in process)", () => {
  /** An invoker that keeps results in a map, as replicas do, and logs what it is asked. */
  function fakeInvoker(fns: Record<string, (...a: unknown[]) => unknown>) {
    const kept = new Map<string, unknown>();
    const log: string[] = [];
    let n = 0;
    const run = async (d: string, args: unknown[]) => {
      const a = await Promise.all(args.map(async (x) => (x instanceof KeptRef ? (log.push(`${d} fetches ${x.token}`), kept.get(x.token)) : x)));
      await Bun.sleep(5);
      return fns[d]!(...a);
    };
    const invoker: Invoker = {
      call: (d, _m, args) => (log.push(`call ${d}`), run(d, args)),
      stream: () => (async function* () {})(),
      callKept: async (d, _m, args) => {
        log.push(`keep ${d}`);
        const v = await run(d, args);
        const token = `t${++n}`;
        kept.set(token, v);
        return new KeptRef("/sock", token, d);
      },
      fetchKept: async (ref) => (log.push(`caller fetches ${ref.token}`), kept.get(ref.token)),
      releaseKept: (ref) => (log.push(`release ${ref.token}`), kept.delete(ref.token)),
    };
    const handle = (name: string) => createHandle<(...a: unknown[]) => unknown>({ name, kind: "function", methods: [] }, invoker);
    return { kept, log, handle };
  }

  it("forwards an un-awaited response, and releases it when the outer call completes", async () => {
    const { kept, log, handle } = fakeInvoker({ A: (x) => (x as number) * 2, B: (x) => (x as number) + 1 });
    const a = handle("A");
    const b = handle("B");
    expect(await b.remote(a.remote(5))).toEqual(11);
    await macrotask();
    expect(log).toEqual(["keep A", "call B", "B fetches t1", "release t1"]);
    expect(kept.size).toEqual(0);
  });

  it("does not forward a response awaited (or then'd) before it was passed on", async () => {
    const { log, handle } = fakeInvoker({ A: (x) => (x as number) * 2, B: (x) => (x as number) + 1 });
    const r = handle("A").remote(5);
    const v = r.then((x) => x);
    expect(await handle("B").remote(r)).toEqual(11);
    expect(await v).toEqual(10);
    expect(log).toEqual(["call A", "call B"]);
  });

  it("shares one kept result among several outer calls, released after the last", async () => {
    const { kept, log, handle } = fakeInvoker({ A: (x) => (x as number) * 2, B: (x) => (x as number) + 1, C: (x, y) => (x as number) * (y as number) });
    const r = handle("A").remote(5);
    const [b, c] = await Promise.all([handle("B").remote(r), handle("C").remote(r, 3)]);
    expect([b, c]).toEqual([11, 30]);
    await macrotask();
    expect(log.filter((l) => l.startsWith("keep") || l.startsWith("release"))).toEqual(["keep A", "release t1"]);
    expect(kept.size).toEqual(0);
  });

  it("fetches the value for the caller when awaited before release, and fails clearly after", async () => {
    const { kept, log, handle } = fakeInvoker({ A: (x) => (x as number) * 2, B: (x) => (x as number) + 1 });
    const r1 = handle("A").remote(1);
    const o1 = handle("B").remote(r1);
    expect(await Promise.all([o1, r1])).toEqual([3, 2]);
    expect(log).toContain("caller fetches t1");
    await macrotask();
    expect(log.at(-1)).toEqual("release t1");
    const r2 = handle("A").remote(2);
    expect(await handle("B").remote(r2)).toEqual(5);
    await macrotask(); // the release waits one macrotask: awaiting r2 after that fails
    const e = (await r2.then(
      () => null,
      (x) => x,
    )) as ServeError;
    expect(e).toBeInstanceOf(ServeError);
    expect(e.message).toMatch(/the result of A was forwarded to B and released.*await it before passing it on/);
    expect(kept.size).toEqual(0);
  });

  it("fails the outer call with the inner call's own error, and nothing is left unhandled", async () => {
    const inner = new ServeError("user", "A failed", { deployment: "A" });
    const { log, handle } = fakeInvoker({
      A: () => {
        throw inner;
      },
      B: (x) => x,
    });
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on("unhandledRejection", onUnhandled);
    try {
      const r = handle("A").remote(1);
      await expect(handle("B").remote(r)).rejects.toBe(inner);
      await expect(r).rejects.toBe(inner);
      void handle("B").remote(handle("A").remote(2)); // nobody awaits either
      await Bun.sleep(30);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
    expect(unhandled).toEqual([]);
    expect(log).not.toContain("call B");
  });
});

/** Lets a macrotask pass (the release of a forwarded result waits one). */
function macrotask(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 5));
}
