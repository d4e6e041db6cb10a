import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { batch, deployment, InputNode, ServeError, setBatchOptions } from "serve-bin";
import { maxBatchSizeOf } from "../src/api/batch.ts";
import { withRequestContext } from "../src/api/request-context.ts";
import { ROOT, startServer, waitFor, type RunningServer } from "./harness.ts";

const FIXTURES = join(ROOT, "test/fixtures");

type Method = (...args: any[]) => any;

/**
 * Applies a decorator the way a transpiler does for `@dec method() {}`.
 * vitest's transformer (oxc) leaves standard decorators unlowered, so tests
 * that run in this process apply them by hand; the served fixtures below use
 * the real syntax, which Bun lowers, in both dialects.
 */
function decorate<C extends abstract new (...a: any[]) => any>(cls: C, name: string, dec: unknown, dialect: "standard" | "legacy" = "standard"): C {
  const proto = cls.prototype as Record<string, Method>;
  if (dialect === "legacy") {
    const desc = Object.getOwnPropertyDescriptor(proto, name)!;
    Object.defineProperty(proto, name, ((dec as Method)(proto, name, desc) as PropertyDescriptor | undefined) ?? desc);
    return cls;
  }
  const context = { kind: "method", name, static: false, private: false, metadata: {}, addInitializer() {}, access: { has: () => true, get: (o: any) => o[name] } };
  const replaced = (dec as Method)(proto[name], context);
  if (replaced) Object.defineProperty(proto, name, { value: replaced, writable: true, configurable: true, enumerable: false });
  return cls;
}

/** A gate the test opens: lets a batch start and then holds it until released. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { open, opened };
}

async function settle<T>(ps: Promise<T>[]): Promise<({ ok: true; value: T } | { ok: false; error: Error })[]> {
  return (await Promise.allSettled(ps)).map((r) => (r.status === "fulfilled" ? { ok: true, value: r.value } : { ok: false, error: r.reason as Error }));
}

/** A batched method as its callers see it: one item in, one result out. */
type One<I, O> = (x: I) => Promise<O>;

describe("batch() in one process", () => {
  it("gathers concurrent callers into batches of at most maxBatchSize and gives each caller its own result", async () => {
    const sizes: number[] = [];
    class Doubler {
      async predict(xs: number[]) {
        sizes.push(xs.length);
        return xs.map((x) => x * 2);
      }
    }
    decorate(Doubler, "predict", batch({ maxBatchSize: 4, batchWaitTimeoutS: 0.01 }));
    const d = new Doubler() as unknown as { predict: One<number, number> };
    const xs = Array.from({ length: 10 }, (_, i) => i);
    expect(await Promise.all(xs.map((x) => d.predict(x)))).toEqual(xs.map((x) => x * 2));
    expect(sizes).toEqual([4, 4, 2]);
  });

  it("works the same as an experimentalDecorators decorator (target, key, descriptor)", async () => {
    const sizes: number[] = [];
    class Doubler {
      async predict(xs: number[]) {
        sizes.push(xs.length);
        return xs.map((x) => x * 2);
      }
    }
    decorate(Doubler, "predict", batch({ maxBatchSize: 4, batchWaitTimeoutS: 0.01 }), "legacy");
    const d = new Doubler() as unknown as { predict: One<number, number> };
    expect(await Promise.all([1, 2, 3, 4, 5].map((x) => d.predict(x)))).toEqual([2, 4, 6, 8, 10]);
    expect(sizes).toEqual([4, 1]);
  });

  it("takes the defaults (maxBatchSize 10) when used bare, as @batch, in either dialect", async () => {
    for (const dialect of ["standard", "legacy"] as const) {
      const sizes: number[] = [];
      class Model {
        async predict(xs: number[]) {
          sizes.push(xs.length);
          return xs;
        }
      }
      decorate(Model, "predict", batch, dialect);
      const m = new Model() as unknown as { predict: One<number, number> };
      await Promise.all(Array.from({ length: 12 }, (_, i) => m.predict(i)));
      expect(sizes).toEqual([10, 2]);
    }
  });

  it("runs one batch at a time; callers arriving while it runs fill the next one", async () => {
    const sizes: number[] = [];
    let running = 0;
    let maxRunning = 0;
    const release = gate();
    const started = gate();
    class Model {
      async predict(xs: string[]) {
        sizes.push(xs.length);
        maxRunning = Math.max(maxRunning, ++running);
        started.open();
        await release.opened;
        running--;
        return xs.map((x) => x.toUpperCase());
      }
    }
    decorate(Model, "predict", batch({ maxBatchSize: 4, batchWaitTimeoutS: 0.001 }));
    const m = new Model() as unknown as { predict: One<string, string> };
    const first = m.predict("a");
    await started.opened;
    const rest = ["b", "c", "d", "e", "f", "g"].map((x) => m.predict(x));
    release.open();
    expect(await Promise.all([first, ...rest])).toEqual(["A", "B", "C", "D", "E", "F", "G"]);
    expect(sizes).toEqual([1, 4, 2]);
    expect(maxRunning).toBe(1);
  });

  it("waits at most batchWaitTimeoutS after the first caller before running a partial batch", async () => {
    class Model {
      async predict(xs: number[]) {
        return xs.map(() => performance.now());
      }
    }
    decorate(Model, "predict", batch({ maxBatchSize: 100, batchWaitTimeoutS: 0.05 }));
    const m = new Model() as unknown as { predict: One<number, number> };
    const t0 = performance.now();
    const ranAt = await m.predict(1);
    expect(ranAt - t0).toBeGreaterThanOrEqual(45);
  });

  it("fails every caller in a batch whose method throws, with the method's error", async () => {
    class Model {
      async predict(xs: number[]) {
        throw new RangeError(`bad batch of ${xs.length}`);
      }
    }
    decorate(Model, "predict", batch({ maxBatchSize: 3, batchWaitTimeoutS: 1 }));
    const m = new Model() as unknown as { predict: One<number, number> };
    const out = await settle([1, 2, 3].map((x) => m.predict(x)));
    expect(out.map((r) => (r.ok ? "ok" : `${r.error.name}: ${r.error.message}`))).toEqual(Array(3).fill("RangeError: bad batch of 3"));
  });

  it("fails every caller when the result is not an array of the batch's length, saying what came back", async () => {
    class Model {
      async short(xs: number[]) {
        return xs.slice(1);
      }
      async notAnArray(xs: number[]) {
        return { sum: xs.reduce((a, b) => a + b, 0) };
      }
    }
    decorate(Model, "short", batch({ maxBatchSize: 4, batchWaitTimeoutS: 1 }));
    decorate(Model, "notAnArray", batch({ maxBatchSize: 2, batchWaitTimeoutS: 1 }));
    const m = new Model() as unknown as { short: One<number, number>; notAnArray: One<number, number> };
    const short = await settle([1, 2, 3, 4].map((x) => m.short(x)));
    expect(short.map((r) => (r.ok ? "ok" : r.error.message))).toEqual(
      Array(4).fill("Model.short returned 3 results for a batch of 4; a batched method must return an array with one result per input, in order"),
    );
    const odd = await settle([1, 2].map((x) => m.notAnArray(x)));
    expect(odd.map((r) => (r.ok ? "ok" : r.error.message))).toEqual(
      Array(2).fill("Model.notAnArray returned object instead of an array of 2 results for a batch of 2; a batched method must return an array with one result per input, in order"),
    );
  });

  it("keeps the decorated method a prototype method, so a graph binds and executes it with one item", async () => {
    class Vec {
      async predict(xs: number[]) {
        return xs.map((x) => ({ y: x * 2, batchSize: xs.length }));
      }
    }
    // Full at 5, so the batch starts when the fifth call arrives, however busy the machine (a 10 ms wait
    // once split the five when the process stalled between two of them).
    decorate(Vec, "predict", batch({ maxBatchSize: 5, batchWaitTimeoutS: 5 }));
    expect(Object.getOwnPropertyNames(Vec.prototype)).toEqual(["constructor", "predict"]);
    const input = new InputNode();
    const dag = deployment(Vec).bind().predict.bind(input);
    const out = (await Promise.all([1, 2, 3, 4, 5].map((x) => dag.execute(x)))) as unknown as { y: number; batchSize: number }[];
    expect(out).toEqual([2, 4, 6, 8, 10].map((y) => ({ y, batchSize: 5 })));
  });

  it("batches a function deployment wrapped with batch(fn, options), keeping the function's name", async () => {
    const sizes: number[] = [];
    const embed = deployment(
      batch(
        async function embed(texts: string[]) {
          sizes.push(texts.length);
          return texts.map((t) => t.length);
        },
        { maxBatchSize: 3, batchWaitTimeoutS: 0.25 }, // the first batch starts full; the last two wait this long
      ),
    );
    expect(embed.name).toBe("embed");
    const input = new InputNode();
    const dag = embed.bind(input);
    expect(await Promise.all(["a", "bb", "ccc", "dddd", "eeeee"].map((t) => dag.execute(t)))).toEqual([1, 2, 3, 4, 5]);
    expect(sizes).toEqual([3, 2]);
  });

  it("passes each argument position as its own list when callers send several arguments", async () => {
    const add = batch(async (as: number[], bs: number[]) => as.map((a, i) => a + bs[i]!), { maxBatchSize: 3, batchWaitTimeoutS: 1 });
    expect(await Promise.all([add(1, 10), add(2, 20), add(3, 30)])).toEqual([11, 22, 33]);
  });

  it("changes the limits live with setBatchOptions, checks them, and reports what is in force", async () => {
    const sizes: number[] = [];
    class Model {
      async predict(xs: number[]) {
        sizes.push(xs.length);
        return xs;
      }
      reconfigure(cfg: { maxBatchSize: number }) {
        return setBatchOptions(this, "predict", { maxBatchSize: cfg.maxBatchSize });
      }
    }
    decorate(Model, "predict", batch({ maxBatchSize: 8, batchWaitTimeoutS: 1 }));
    const m = new Model();
    const call = (x: number) => (m as unknown as { predict: One<number, number> }).predict(x);
    expect(m.reconfigure({ maxBatchSize: 2 })).toEqual({ maxBatchSize: 2, batchWaitTimeoutS: 1 });
    expect(await Promise.all([1, 2, 3, 4, 5, 6].map(call))).toEqual([1, 2, 3, 4, 5, 6]);
    expect(sizes).toEqual([2, 2, 2]);
    // Lowering the limit to what is already queued starts that batch at once instead of after the wait.
    sizes.length = 0;
    m.reconfigure({ maxBatchSize: 8 });
    const queued = [1, 2, 3].map(call);
    m.reconfigure({ maxBatchSize: 3 });
    expect(await Promise.all(queued)).toEqual([1, 2, 3]);
    expect(sizes).toEqual([3]);
    expect(() => setBatchOptions(m, "predict", { maxBatchSize: 0 })).toThrow(/maxBatchSize: expected a whole number ≥ 1/);
    expect(() => setBatchOptions(m, "predict", { maxBatchsize: 3 } as never)).toThrow(/did you mean "maxBatchSize"/);
    expect(() => setBatchOptions(m, "reconfigure", { maxBatchSize: 3 })).toThrow(/Model.reconfigure is not batched; decorate the method with @batch/);
  });

  it("changes a batched function's limits with setBatchOptions(fn, options)", async () => {
    const sizes: number[] = [];
    const fn = batch(
      async (xs: number[]) => {
        sizes.push(xs.length);
        return xs;
      },
      { maxBatchSize: 10, batchWaitTimeoutS: 1 },
    );
    expect(setBatchOptions(fn, { maxBatchSize: 2 })).toEqual({ maxBatchSize: 2, batchWaitTimeoutS: 1 });
    await Promise.all([1, 2, 3, 4].map((x) => fn(x)));
    expect(sizes).toEqual([2, 2]);
  });

  it("keeps separate batches per instance", async () => {
    const seen: string[][] = [];
    class Model {
      constructor(readonly tag: string) {}
      async predict(xs: string[]) {
        seen.push(xs.map((x) => `${this.tag}${x}`));
        return xs;
      }
    }
    decorate(Model, "predict", batch({ maxBatchSize: 10, batchWaitTimeoutS: 0.01 }));
    const a = new Model("a") as unknown as { predict: One<string, string> };
    const b = new Model("b") as unknown as { predict: One<string, string> };
    await Promise.all([a.predict("1"), b.predict("2"), a.predict("3")]);
    expect(seen.sort()).toEqual([["a1", "a3"], ["b2"]]);
  });

  it("drops a caller whose request is cancelled while it waits for its batch", async () => {
    const sizes: number[] = [];
    class Model {
      async predict(xs: number[]) {
        sizes.push(xs.length);
        return xs;
      }
    }
    decorate(Model, "predict", batch({ maxBatchSize: 10, batchWaitTimeoutS: 0.05 }));
    const m = new Model() as unknown as { predict: One<number, number> };
    const ctl = new AbortController();
    const gone = withRequestContext({ requestId: "gone", signal: ctl.signal }, () => m.predict(1));
    const stays = m.predict(2);
    ctl.abort(new ServeError("cancelled", "the client went away"));
    await expect(gone).rejects.toThrow("the client went away");
    expect(await stays).toBe(2);
    expect(sizes).toEqual([1]);
  });

  it("refuses invalid options when decorating, naming the field", () => {
    expect(() => batch({ maxBatchSize: 0 })).toThrow(/invalid batch options for @batch\(\.\.\.\):\nmaxBatchSize: expected a whole number ≥ 1/);
    expect(() => batch(async (xs: number[]) => xs, { batchWaitTimeoutS: -1 })).toThrow(/batchWaitTimeoutS: expected a number of seconds ≥ 0/);
    class Model {
      get size() {
        return 1;
      }
    }
    expect(() => decorate(Model, "size", batch(), "legacy")).toThrow("@batch decorates methods, not the accessor size");
  });

  it("marks batched methods so the graph layer can keep maxOngoingRequests at least maxBatchSize", () => {
    class Vec {
      async predict(xs: number[]) {
        return xs;
      }
      async embed(xs: number[]) {
        return xs;
      }
    }
    decorate(Vec, "predict", batch({ maxBatchSize: 8 }));
    decorate(Vec, "embed", batch({ maxBatchSize: 24 }));
    expect(maxBatchSizeOf(Vec)).toBe(24);
    expect(maxBatchSizeOf(batch(async (xs: number[]) => xs, { maxBatchSize: 12 }))).toBe(12);
    expect(maxBatchSizeOf(class Plain {})).toBe(0);
  });
});

interface Answer {
  y: number;
  batchSize: number;
  call: number;
  dialect: string;
}

/** `total` POSTs of 0..total-1 from `concurrency` workers; every answer, in input order. */
async function load(url: string, total: number, concurrency: number): Promise<{ status: number; body: any }[]> {
  const out: { status: number; body: any }[] = new Array(total);
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < total; i = next++) {
        const res = await fetch(url, { method: "POST", body: JSON.stringify(i), headers: { "content-type": "application/json" } });
        out[i] = { status: res.status, body: await res.json() };
      }
    }),
  );
  return out;
}

/** Checks every caller got its own item's result, and that callers sharing a model call saw the same batch size. */
function batchSizes(answers: { status: number; body: Answer }[]): number[] {
  expect(answers.filter((a) => a.status !== 200)).toEqual([]);
  answers.forEach((a, i) => expect(a.body.y).toBe(i * 2));
  const byCall = new Map<number, Answer[]>();
  for (const { body } of answers) byCall.set(body.call, [...(byCall.get(body.call) ?? []), body]);
  const sizes = [...byCall.values()].map((members) => {
    expect(new Set(members.map((m) => m.batchSize))).toEqual(new Set([members.length]));
    return members.length;
  });
  return sizes;
}

function summary(sizes: number[]): string {
  const hist = new Map<number, number>();
  for (const s of sizes) hist.set(s, (hist.get(s) ?? 0) + 1);
  const mean = sizes.reduce((a, b) => a + b, 0) / sizes.length;
  return `${sizes.length} model calls, mean batch ${mean.toFixed(2)}, sizes ${[...hist].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s}×${n}`).join(" ")}`;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

describe("batching in a served graph (standard decorators)", () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await startServer(join(FIXTURES, "batch-vec.ts"));
  });
  afterAll(async () => {
    expect(await server?.stop()).toBe(0);
  });

  it("gathers concurrent HTTP callers into batches and answers each caller with its own item's result", async () => {
    const answers = await load(`${server.url}/vec/predict`, 320, 32);
    const sizes = batchSizes(answers);
    console.log(`served batching, 320 requests at concurrency 32: ${summary(sizes)}`);
    expect(new Set(answers.map((a) => a.body.dialect))).toEqual(new Set(["standard"]));
    expect(Math.max(...sizes)).toBeLessThanOrEqual(8);
    expect(mean(sizes)).toBeGreaterThan(2);
  });

  it("fails every caller of a batch whose method throws with a 500 naming the deployment", async () => {
    const answers = await load(`${server.url}/vec/fail`, 16, 16);
    for (const a of answers) {
      expect(a.status).toBe(500);
      expect(a.body).toMatchObject({ error: "user", deployment: "Vec", message: expect.stringMatching(/^the model failed on a batch of \d+$/) });
    }
  });

  it("fails every caller of a batch that returns too few results, saying how many for how many", async () => {
    const answers = await load(`${server.url}/vec/short`, 16, 16);
    for (const a of answers) {
      expect(a.status).toBe(500);
      expect(a.body.message).toMatch(/^Vec\.short returned (\d+) results? for a batch of \d+; a batched method must return an array with one result per input, in order$/);
      const [, got, of] = /returned (\d+) results? for a batch of (\d+)/.exec(a.body.message)!;
      expect(Number(got)).toBe(Number(of) - 1);
    }
  });

  it("changes maxBatchSize live through a userConfig PATCH, with no restart", async () => {
    const patch = async (userConfig: unknown) => {
      const res = await fetch(`${server.adminUrl}/api/applications/default/deployments/Vec`, {
        method: "PATCH",
        body: JSON.stringify({ userConfig }),
        headers: { "content-type": "application/json" },
      });
      expect({ status: res.status, body: res.status === 200 ? "ok" : await res.text() }).toEqual({ status: 200, body: "ok" });
    };
    const pids = await replicaPids(server);
    await patch({ maxBatchSize: 2 });
    const small = batchSizes(await load(`${server.url}/vec/predict`, 120, 32));
    console.log(`after PATCH userConfig {maxBatchSize: 2}: ${summary(small)}`);
    expect(Math.max(...small)).toBe(2);
    await patch({ maxBatchSize: 8 });
    const large = batchSizes(await load(`${server.url}/vec/predict`, 160, 32));
    console.log(`after PATCH userConfig {maxBatchSize: 8}: ${summary(large)}`);
    expect(Math.max(...large)).toBeGreaterThan(2);
    expect(await replicaPids(server)).toEqual(pids);
  });
});

async function replicaPids(server: RunningServer): Promise<Record<string, number[]>> {
  const status = (await (await fetch(`${server.adminUrl}/api/applications`)).json()) as {
    applications: Record<string, { deployments: Record<string, { replicas: { pid: number }[] }> }>;
  };
  return Object.fromEntries(Object.entries(status.applications.default!.deployments).map(([name, d]) => [name, d.replicas.map((r) => r.pid).sort()]));
}

describe("batching with experimentalDecorators", () => {
  it("batches a method decorated under the legacy dialect, served from its folder's tsconfig", async () => {
    await using server = await startServer("graph.ts", { cwd: join(FIXTURES, "batch-legacy") });
    const answers = await load(server.url, 160, 32);
    const sizes = batchSizes(answers);
    console.log(`legacy decorators, 160 requests at concurrency 32: ${summary(sizes)}`);
    expect(new Set(answers.map((a) => a.body.dialect))).toEqual(new Set(["legacy"]));
    expect(mean(sizes)).toBeGreaterThan(2);
  });
});
