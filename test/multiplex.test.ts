/**
 * Model multiplexing (`@multiplexed`, Ray's `@serve.multiplexed`): a replica
 * keeps an LRU of models by id, a request names its model by header or
 * handle option, and routing prefers a replica that has it loaded.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { MAX_MODEL_ID_LENGTH, multiplexed, multiplexedModelId } from "../src/api/multiplex.ts";
import { deployment, type DeploymentHandle } from "../src/index.ts";
import { ROOT, postJSON, startServer, stopCleanly, type RunningServer } from "./harness.ts";

interface Answer {
  pid: number;
  model: string;
  y: number;
  loads: string[];
  used: string[];
  evicted: string[];
}

/** Applies the decorator as a standard-decorator transpiler would. */
function cached<T>(max: number, load: (id: string) => Promise<T>): (id: string) => Promise<T> {
  const method = multiplexed({ maxModelsPerReplica: max })(async function getModel(id: string) { return load(id); }, { kind: "method", name: "getModel" } as ClassMethodDecoratorContext);
  const self = {};
  return (id) => method.call(self, id) as Promise<T>;
}

describe("@multiplexed on its own", () => {
  it("keeps the most recently used models, evicts the least recently used and disposes it", async () => {
    const loads: string[] = [];
    const disposed: string[] = [];
    const get = cached(2, async (id) => (loads.push(id), { id, dispose: () => disposed.push(id) }));
    await get("a");
    await get("b");
    await get("a"); // a is now the most recently used
    await get("c"); // evicts b
    await Bun.sleep(0);
    expect({ loads, disposed }).toEqual({ loads: ["a", "b", "c"], disposed: ["b"] });
    await get("a");
    await get("b"); // evicts c (a was used after it)
    await Bun.sleep(0);
    expect({ loads, disposed }).toEqual({ loads: ["a", "b", "c", "b"], disposed: ["b", "c"] });
  });

  it("loads an id once for calls that arrive together, and does not cache a failed load", async () => {
    let n = 0;
    const get = cached(3, async (id) => {
      n++;
      await Bun.sleep(10);
      if (id === "bad") throw new Error("no such model");
      return id;
    });
    expect(await Promise.all([get("x"), get("x"), get("x")])).toEqual(["x", "x", "x"]);
    expect(n).toBe(1);
    await expect(get("bad")).rejects.toThrow("no such model");
    await expect(get("bad")).rejects.toThrow("no such model");
    expect(n).toBe(3);
  });

  it("refuses maxModelsPerReplica below 1 and a model id that is empty or too long, saying what to send", async () => {
    expect(() => multiplexed({ maxModelsPerReplica: 0 })).toThrow("multiplexed({ maxModelsPerReplica }) must be a whole number ≥ 1 (got 0)");
    expect(() => multiplexed({ maxModelsPerReplica: 1.5 })).toThrow("must be a whole number ≥ 1 (got 1.5)");
    const get = cached(1, async (id) => id);
    expect(() => get("")).toThrow(`a multiplexed model id must be 1..${MAX_MODEL_ID_LENGTH} characters (got 0)`);
    expect(() => get("m".repeat(MAX_MODEL_ID_LENGTH + 1))).toThrow(`(got ${MAX_MODEL_ID_LENGTH + 1})`);
    expect(await get("m".repeat(MAX_MODEL_ID_LENGTH))).toHaveLength(MAX_MODEL_ID_LENGTH);
  });
});

describe("multiplexing in dag.execute()", () => {
  it("gives the callee the model id of handle.options({ multiplexedModelId }), and none otherwise", async () => {
    const which = deployment(function which() {
      return multiplexedModelId();
    });
    const Caller = deployment(
      class Caller {
        constructor(private w: DeploymentHandle) {}
        async __call__(id: string) {
          return [await this.w.options({ multiplexedModelId: id }).remote(), await this.w.remote()];
        }
      },
    );
    expect(await Caller.bind(which.bind()).execute("m-7")).toEqual(["m-7", ""]);
  });
});

describe("multiplexing served: three model ids over two replicas of two models each", () => {
  let server: RunningServer;
  /** The latest answer from each replica, by pid. */
  const last = new Map<number, Answer>();
  const ask = async (model: string, x = 1): Promise<Answer> => {
    const res = await postJSON(`${server.url}/header`, x, { headers: { "content-type": "application/json", "serve-multiplexed-model-id": model } });
    const body = (await res.json()) as Answer;
    expect({ status: res.status, model: body.model, y: body.y }).toEqual({ status: 200, model, y: x * model.length });
    last.set(body.pid, body);
    return body;
  };
  const loadedOn = (a: Answer) => a.loads.length - a.evicted.length;

  beforeAll(async () => {
    server = await startServer(join(ROOT, "test/fixtures/multiplex.ts"));
  });
  afterAll(async () => {
    if (server) await stopCleanly(server);
  });

  it("loads each model once and sends every later request for it to the replica that has it", async () => {
    const home = new Map<string, number>();
    for (let round = 0; round < 4; round++) {
      for (const id of ["a", "bb", "ccc"]) {
        const r = await ask(id, round + 1);
        if (round === 0) home.set(id, r.pid);
        expect(r.pid).toBe(home.get(id));
      }
    }
    const replicas = [...last.values()];
    expect(replicas).toHaveLength(2); // a new model goes to the replica with fewer loaded
    expect(replicas.flatMap((r) => r.loads).sort()).toEqual(["a", "bb", "ccc"]);
    expect(replicas.flatMap((r) => r.evicted)).toEqual([]);
  });

  it("evicts the least recently used model of a full replica when it loads one more", async () => {
    await ask("dddd"); // the replica with one model takes it: both are full now
    expect([...last.values()].map(loadedOn)).toEqual([2, 2]);
    const before = new Map([...last].map(([pid, a]) => [pid, a]));
    const r = await ask("eeeee");
    const prev = before.get(r.pid)!;
    // Of the two models this replica held, the one it used least recently.
    const held = prev.loads.filter((id) => !prev.evicted.includes(id));
    const lru = held.sort((x, y) => prev.used.lastIndexOf(x) - prev.used.lastIndexOf(y))[0];
    expect(r.evicted).toEqual([...prev.evicted, lru]);
    expect(r.loads).toEqual([...prev.loads, "eeeee"]);
    expect(loadedOn(r)).toBe(2);
    // The evicted model is loaded again where it is asked for next, and only once.
    const again = await ask(lru!);
    const loadsOfLru = [...last.values()].flatMap((a) => a.loads).filter((id) => id === lru).length;
    expect(loadsOfLru).toBe(2);
    expect((await ask(lru!)).pid).toBe(again.pid);
  });

  it("takes the model id from handle.options({ multiplexedModelId }) and routes it the same way", async () => {
    const where = (await ask("a")).pid;
    const res = await postJSON(`${server.url}/handle`, { model: "a", x: 5 });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ pid: where, model: "a", y: 5 });
    const mixedCase = await postJSON(`${server.url}/header`, 2, { headers: { "content-type": "application/json", "Serve-Multiplexed-Model-Id": "a" } });
    expect(await mixedCase.json()).toMatchObject({ pid: where, model: "a", y: 2 });
  });

  it("streams from a multiplexed replica, the model id travelling with the streamed call", async () => {
    const res = await postJSON(`${server.url}/stream`, 3, { headers: { "content-type": "application/json", "serve-multiplexed-model-id": "bb" } });
    expect({ status: res.status, text: await res.text() }).toEqual({ status: 200, text: "bb0 bb1 bb2 " });
  });

  it("answers 400 saying what to send for a request with no model id or one over the length limit", async () => {
    const none = await postJSON(`${server.url}/header`, 1);
    expect(none.status).toBe(400);
    expect(await none.json()).toMatchObject({ error: "bad_request", message: expect.stringContaining("a multiplexed model id must be 1..256 characters (got 0); send it in the serve-multiplexed-model-id header") });
    const long = await postJSON(`${server.url}/header`, 1, { headers: { "content-type": "application/json", "serve-multiplexed-model-id": "m".repeat(257) } });
    expect(long.status).toBe(400);
    expect(await long.json()).toMatchObject({ error: "bad_request", message: expect.stringContaining("(got 257)") });
  });
});

describe("multiplexing served by the compiled binary", () => {
  it("loads each of three models once over two replicas and routes repeats to the replica that has it", async () => {
    const server = await startServer(join(ROOT, "test/fixtures/multiplex.ts"), { compiled: true });
    try {
      const seen: Answer[] = [];
      for (const id of ["a", "bb", "ccc", "a", "bb", "ccc"]) {
        const res = await postJSON(`${server.url}/header`, 2, { headers: { "content-type": "application/json", "serve-multiplexed-model-id": id } });
        expect(res.status).toBe(200);
        seen.push((await res.json()) as Answer);
      }
      expect(seen.map((a) => a.y)).toEqual([2, 4, 6, 2, 4, 6]);
      expect(seen.slice(3).map((a) => a.pid)).toEqual(seen.slice(0, 3).map((a) => a.pid));
      const last = new Map(seen.map((a) => [a.pid, a]));
      expect([...last.values()].flatMap((a) => a.loads).sort()).toEqual(["a", "bb", "ccc"]);
    } finally {
      await stopCleanly(server);
    }
  });
});
