import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { DAGDriver, deployment, DeploymentResponse, InputNode, requestContext, ServeError, type DeploymentHandle } from "serve-bin";
import { failure } from "./failure.ts";


class Model {
  constructor(readonly weight: number) {}
  forward(x: number) {
    return x * this.weight;
  }
  async slowForward(x: number) {
    await Promise.resolve();
    return x * this.weight;
  }
}
const ModelD = deployment(Model);

class Scorer {
  constructor(readonly bias: number) {}
  __call__(x: number) {
    return x + this.bias;
  }
  explain(x: number) {
    return `${x} + ${this.bias}`;
  }
}
const ScorerD = deployment(Scorer);

const square = deployment(function square(x: number) {
  return x * x;
});

describe("init args that are nodes", () => {
  it("become handles, also inside objects, arrays and maps", async () => {
    const Hub = deployment(
      class Hub {
        constructor(
          readonly direct: DeploymentHandle<Model>,
          readonly byName: { a: DeploymentHandle<Model> },
          readonly list: DeploymentHandle<Model>[],
          readonly map: Map<string, DeploymentHandle<Model>>,
        ) {}
        async run(x: number) {
          const handles = [this.direct, this.byName.a, this.list[0]!, this.map.get("m")!];
          return {
            names: handles.map((h) => h.deploymentName),
            results: await Promise.all(handles.map((h) => h.forward.remote(x))),
          };
        }
      },
    );
    const input = new InputNode();
    const hub = Hub.bind(ModelD.bind(1), { a: ModelD.bind(10) }, [ModelD.bind(100)], new Map([["m", ModelD.bind(1000)]]));
    expect(await hub.run.bind(input).execute(2)).toEqual({ names: ["Model", "Model_1", "Model_2", "Model_3"], results: [2, 20, 200, 2000] });
  });

  it("keeps the constant parts of an init arg next to the handles", async () => {
    const Holder = deployment(
      class Holder {
        constructor(readonly cfg: { model: DeploymentHandle<Model>; scale: number; tags: string[] }) {}
        async run(x: number) {
          return { scaled: (await this.cfg.model.forward.remote(x)) * this.cfg.scale, tags: this.cfg.tags };
        }
      },
    );
    const dag = Holder.bind({ model: ModelD.bind(3), scale: 2, tags: ["a"] }).run.bind(new InputNode());
    expect(await dag.execute(5)).toEqual({ scaled: 30, tags: ["a"] });
  });

  it("gives a handle to a function deployment, called with handle.remote()", async () => {
    const User = deployment(
      class User {
        constructor(readonly sq: DeploymentHandle<(x: number) => number>) {}
        async run(x: number) {
          return [this.sq.deploymentName, await this.sq.remote(x)];
        }
      },
    );
    // @ts-expect-error bind's types ask for square's argument, though a handle ignores bound args
    const handleNode = square.bind();
    expect(await User.bind(handleNode).run.bind(new InputNode()).execute(7)).toEqual(["square", 49]);
  });

  it("gives a handle to a DAGDriver whose predict runs its graph", async () => {
    const input = new InputNode();
    const Front = deployment(
      class Front {
        constructor(readonly driver: DeploymentHandle<{ predict(x: unknown): Promise<unknown> }>) {}
        async run(x: number) {
          return this.driver.predict.remote(x + 1);
        }
      },
    );
    const driver = DAGDriver.bind(ModelD.bind(3).forward.bind(input));
    expect(await Front.bind(driver).run.bind(input).execute(1)).toEqual(6);
  });
});

describe("calling through a handle", () => {
  const Caller = deployment(
    class Caller {
      constructor(
        readonly model: DeploymentHandle<Model>,
        readonly scorer: DeploymentHandle<Scorer>,
      ) {}
      async methods(x: number) {
        return [await this.model.forward.remote(x), await this.model.slowForward.remote(x)];
      }
      async call(x: number) {
        return [await this.scorer.remote(x), await this.scorer.options({ method: "explain" }).remote(x)];
      }
      async chained(x: number) {
        // the first response goes into the second call un-awaited
        return this.scorer.remote(this.model.forward.remote(x));
      }
      sync(x: number) {
        return x - 1;
      }
    },
  );
  const caller = Caller.bind(ModelD.bind(2), ScorerD.bind(0.5));
  const input = new InputNode();

  it("calls a method with handle.method.remote(), sync or async", async () => {
    expect(await caller.methods.bind(input).execute(4)).toEqual([8, 8]);
  });

  it("calls __call__ with handle.remote(), and another method through options({ method })", async () => {
    expect(await caller.call.bind(input).execute(4)).toEqual([4.5, "4 + 0.5"]);
  });

  it("returns a DeploymentResponse that is awaitable and passable un-awaited to another remote()", async () => {
    expect(await caller.chained.bind(input).execute(4)).toEqual(8.5);
    const Probe = deployment(
      class Probe {
        constructor(readonly model: DeploymentHandle<Model>) {}
        async run(x: number) {
          const res = this.model.forward.remote(x);
          return [res instanceof DeploymentResponse, await res];
        }
      },
    );
    expect(await Probe.bind(ModelD.bind(3)).run.bind(input).execute(1)).toEqual([true, 3]);
  });

  it("runs a sync method bound in the graph", async () => {
    expect(await caller.sync.bind(input).execute(4)).toEqual(3);
  });

  it("streams the chunks of an async-generator method with options({ stream: true })", async () => {
    class Counter {
      async *count(n: number) {
        for (let i = 0; i < n; i++) yield { i };
      }
    }
    const CounterD = deployment(Counter);
    const Reader = deployment(
      class Reader {
        constructor(readonly counter: DeploymentHandle<Counter>) {}
        async run(n: number) {
          const chunks: unknown[] = [];
          for await (const c of this.counter.options({ stream: true }).count.remote(n) as unknown as AsyncIterable<unknown>) chunks.push(c);
          return chunks;
        }
      },
    );
    expect(await Reader.bind(CounterD.bind()).run.bind(input).execute(3)).toEqual([{ i: 0 }, { i: 1 }, { i: 2 }]);
  });
});

describe("failures through handles", () => {
  const failed: string[] = [];
  class Flaky {
    fail(tag: string): string {
      failed.push(tag);
      throw new RangeError(`failed ${tag}`);
    }
    echo(x: string) {
      return x;
    }
  }
  const FlakyD = deployment(Flaky);
  const Caller = deployment(
    class Caller {
      constructor(readonly flaky: DeploymentHandle<Flaky>) {}
      fireAndForget(tag: string) {
        this.flaky.fail.remote(tag);
        return "returned first";
      }
      async forwardFailure(tag: string) {
        return await this.flaky.echo.remote(this.flaky.fail.remote(tag));
      }
    },
  );
  const caller = Caller.bind(FlakyD.bind());
  const input = new InputNode();

  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => void unhandled.push(reason);
  beforeEach(() => {
    unhandled.length = 0;
    process.on("unhandledRejection", onUnhandled);
  });
  afterEach(() => {
    process.off("unhandledRejection", onUnhandled);
  });

  it("never turns an un-awaited response that fails into an unhandled rejection", async () => {
    expect(await caller.fireAndForget.bind(input).execute("lost")).toEqual("returned first");
    await vi.waitFor(() => expect(failed).toContain("lost"));
    // the rejection settles within a few turns of the event loop after the throw
    for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 0));
    expect(unhandled).toEqual([]);
  });

  it("fails the caller with the callee's error when a failed response is passed on un-awaited", async () => {
    expect(await failure(() => caller.forwardFailure.bind(input).execute("passed"))).toEqual({
      name: "ServeError",
      code: "user",
      message: "failed passed",
      deployment: "Flaky",
    });
    for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 0));
    expect(unhandled).toEqual([]);
  });
});

describe("reconfigure", () => {
  it("is called with options.userConfig at start, before the first call, and once", async () => {
    const events: unknown[] = [];
    const Tunable = deployment(
      class Tunable {
        threshold = 0;
        constructor() {
          events.push("constructed");
        }
        reconfigure(config: { threshold: number }) {
          events.push(["reconfigure", config]);
          this.threshold = config.threshold;
        }
        check(x: number) {
          events.push("check");
          return x > this.threshold;
        }
      },
      { userConfig: { threshold: 5 } },
    );
    const dag = Tunable.bind().check.bind(new InputNode());
    expect([await dag.execute(3), await dag.execute(7)]).toEqual([false, true]);
    expect(events).toEqual(["constructed", ["reconfigure", { threshold: 5 }], "check", "check"]);
  });

  it("awaits an async reconfigure before the first call", async () => {
    const Slow = deployment(
      class Slow {
        ready = false;
        async reconfigure(_config: unknown) {
          await new Promise((r) => setTimeout(r, 5));
          this.ready = true;
        }
        check() {
          return this.ready;
        }
      },
    ).options({ userConfig: [1] });
    expect(await Slow.bind().check.bind().execute()).toEqual(true);
  });

  it("is not called when no userConfig is set", async () => {
    let calls = 0;
    const Plain = deployment(
      class Plain {
        reconfigure() {
          calls++;
        }
        run() {
          return "ran";
        }
      },
    );
    expect(await Plain.bind().run.bind().execute()).toEqual("ran");
    expect(calls).toEqual(0);
  });

  it("fails execute with the user's error when reconfigure throws", async () => {
    const Broken = deployment(
      class Broken {
        reconfigure() {
          throw new Error("bad config");
        }
        run() {
          return "never";
        }
      },
      { userConfig: { x: 1 } },
    );
    expect(await failure(() => Broken.bind().run.bind().execute())).toEqual({ name: "ServeError", code: "user", message: "bad config", deployment: "Broken" });
  });
});

describe("requestContext()", () => {
  it("gives every node and handle call of one execute the same requestId, and a new one per execute", async () => {
    const leaf = deployment(function leaf() {
      return requestContext().requestId;
    });
    const Mid = deployment(
      class Mid {
        constructor(readonly leaf: DeploymentHandle<() => string>) {}
        async run(fromNode: string) {
          const { requestId, signal } = requestContext();
          return { here: requestId, fromNode, viaHandle: await this.leaf.remote(), aborted: signal.aborted };
        }
      },
    );
    const dag = Mid.bind(leaf.bind()).run.bind(leaf.bind());
    const first = (await dag.execute()) as { here: string; fromNode: string; viaHandle: string; aborted: boolean };
    expect(first.here).toMatch(/^[0-9a-f-]{36}$/);
    expect(first).toEqual({ here: first.here, fromNode: first.here, viaHandle: first.here, aborted: false });
    const second = (await dag.execute()) as { here: string };
    expect(second.here).not.toEqual(first.here);
  });

  it("gives an empty requestId outside a request", () => {
    expect(requestContext().requestId).toEqual("");
  });
});

describe("values through execute", () => {
  const identity = deployment(function identity(v: unknown) {
    return v;
  });

  it("keep their types: Map, Set, Date, BigInt, typed arrays and undefined", async () => {
    const value = {
      map: new Map<unknown, unknown>([["a", 1], [2, { b: [3n] }]]),
      set: new Set(["x"]),
      date: new Date(Date.UTC(2024, 0, 2)),
      big: 2n ** 70n,
      floats: new Float32Array([1.5, -2.25]),
      bytes: new Uint8Array([0, 255]),
      missing: undefined,
      list: [undefined, null, -0],
    };
    const out = await identity.bind(new InputNode()).execute(value);
    expect(out).toStrictEqual(value);
    expect(out).not.toBe(value);
  });

  it("are copies: user code cannot change the caller's objects", async () => {
    const mutate = deployment(function mutate(o: { n: number }) {
      o.n = 99;
      return o;
    });
    const mine = { n: 1 };
    expect(await mutate.bind(new InputNode()).execute(mine)).toEqual({ n: 99 });
    expect(mine).toEqual({ n: 1 });
  });

  it("fail the call when a result cannot travel, naming what it is", async () => {
    class Opaque {}
    const leaky = deployment(function leaky() {
      return { ok: true, handle: new Opaque() };
    });
    expect(await failure(() => leaky.bind().execute())).toEqual({
      name: "ServeError",
      code: "encode",
      message:
        "Cannot send an instance of class Opaque at $.handle: convert it first, e.g. to a plain object with { ...value } (the wire codec carries primitives, undefined, BigInt, plain objects, arrays, Date, Map, Set, ArrayBuffer, typed arrays, DataView and Error).",
      deployment: "leaky",
    });
  });
});
