import { describe, expect, it } from "vitest";
import { ClassNode, deployment, Deployment, FunctionNode, InputNode, MethodNode, ServeError, type DeploymentHandle } from "serve-bin";
import tutorialDriver, { dag as tutorial } from "../examples/tutorial/graph.ts";
import { buildGraph } from "../src/graph/ir.ts";
import { failure } from "./failure.ts";

const double = deployment(function double(x: number) {
  return 2 * x;
});
const add = deployment(function add(a: number, b: number) {
  return a + b;
});

class Model {
  constructor(readonly weight: number) {}
  forward(x: number) {
    return x * this.weight;
  }
}
const ModelD = deployment(Model);


const names = (root: Parameters<typeof buildGraph>[0]) => [...buildGraph(root).deployments.keys()];
const initArgsOf = (root: Parameters<typeof buildGraph>[0]) =>
  Object.fromEntries([...buildGraph(root).deployments.values()].map((d) => [d.name, d.initArgs]));

describe("deployment()", () => {
  it("names a deployment after its function or class", () => {
    expect([double.name, ModelD.name, deployment(class Other {}).name]).toEqual(["double", "Model", "Other"]);
  });

  it("lets options.name override the name, in deployment() or in .options()", () => {
    expect(deployment(Model, { name: "Big" }).name).toEqual("Big");
    expect(ModelD.options({ name: "Small" }).name).toEqual("Small");
  });

  it("returns a new Deployment from .options(), with the options merged and the original unchanged", () => {
    const a = ModelD.options({ numReplicas: 2 });
    const b = a.options({ maxOngoingRequests: 7 });
    expect(b).toBeInstanceOf(Deployment);
    expect([ModelD.def.options, a.def.options, b.def.options]).toEqual([{}, { numReplicas: 2 }, { numReplicas: 2, maxOngoingRequests: 7 }]);
  });

  it("keeps its definition as frozen plain data", () => {
    expect(Object.isFrozen(ModelD.def)).toEqual(true);
    expect(ModelD.def).toEqual({ name: "Model", kind: "class", target: Model, options: {}, acceptsGraphs: false });
    expect(double.def.kind).toEqual("function");
  });

  it("binds a function into a function node, a class into a class node, a method into a method node", () => {
    const m = ModelD.bind(3);
    const f = double.bind(1);
    const call = m.forward.bind(2);
    expect([f instanceof FunctionNode, m instanceof ClassNode, call instanceof MethodNode]).toEqual([true, true, true]);
    expect([f.args, m.initArgs, call.method, call.args]).toEqual([[1], [3], "forward", [2]]);
  });

  it("refuses something that is neither a function nor a class", async () => {
    expect(await failure(() => deployment(42 as never))).toEqual({
      name: "ServeError",
      code: "build",
      message: "deployment() takes a function or a class, not number",
    });
    expect(await failure(() => deployment(null as never))).toEqual({
      name: "ServeError",
      code: "build",
      message: "deployment() takes a function or a class, not null",
    });
  });
});

describe("naming deployments", () => {
  it("names the tutorial's models Model (weight 1) and Model_1 (weight 2), in post-order", () => {
    expect(names(tutorial)).toEqual(["Model", "Model_1", "Combiner", "preprocessor", "avgPreprocessor"]);
    const initArgs = initArgsOf(tutorial);
    expect([initArgs.Model, initArgs.Model_1]).toEqual([[1], [2]]);
    expect(names(tutorialDriver).at(-1)).toEqual("DAGDriver");
  });

  it("numbers nodes of one class Model, Model_1, Model_2 left to right, depth first", () => {
    const input = new InputNode();
    const a = ModelD.bind(10);
    const b = ModelD.bind(20);
    const c = ModelD.bind(30);
    const dag = add.bind(add.bind(a.forward.bind(input[0]), b.forward.bind(input[0])), c.forward.bind(input[0]));
    expect(names(dag)).toEqual(["Model", "Model_1", "add", "Model_2"]);
    expect(initArgsOf(dag)).toEqual({ Model: [10], Model_1: [20], Model_2: [30], add: [] });
  });

  it("names init-arg nodes before the class that takes them", () => {
    const Pair = deployment(
      class Pair {
        constructor(
          readonly left: DeploymentHandle<Model>,
          readonly right: DeploymentHandle<Model>,
        ) {}
        __call__() {
          return 0;
        }
      },
    );
    expect(names(Pair.bind(ModelD.bind(1), ModelD.bind(2)))).toEqual(["Model", "Model_1", "Pair"]);
  });

  it("uses options({ name }) as the base of the unique names", () => {
    const input = new InputNode();
    const Big = ModelD.options({ name: "Big" });
    const dag = add.bind(Big.bind(1).forward.bind(input), Big.bind(2).forward.bind(input));
    expect(names(dag)).toEqual(["Big", "Big_1", "add"]);
  });

  it("gives two different deployments with the same name distinct names", () => {
    const input = new InputNode();
    const other = deployment(function double(x: number) {
      return x + x;
    });
    expect(names(add.bind(double.bind(input), other.bind(input)))).toEqual(["double", "double_1", "add"]);
  });

  it("makes one deployment of a function bound twice", () => {
    const input = new InputNode();
    const dag = add.bind(double.bind(input[0]), double.bind(input[1]));
    const ir = buildGraph(dag);
    expect(names(dag)).toEqual(["double", "add"]);
    expect(ir.nodes.filter((n) => n.kind === "call").map((n) => n.kind === "call" && n.deployment)).toEqual(["double", "double", "add"]);
  });

  it("makes one deployment of a class node whose methods are bound several times", () => {
    const Calc = deployment(
      class Calc {
        inc(x: number) {
          return x + 1;
        }
        dec(x: number) {
          return x - 1;
        }
      },
    );
    const calc = Calc.bind();
    const input = new InputNode();
    expect(names(add.bind(calc.inc.bind(input), calc.dec.bind(input)))).toEqual(["Calc", "add"]);
  });

  it("builds the same IR for the same root every time", () => {
    expect(buildGraph(tutorial)).toBe(buildGraph(tutorial));
  });
});

describe("executing locally", () => {
  it("computes an output consumed by several nodes once per execute", async () => {
    let calls = 0;
    const expensive = deployment(function expensive(x: number) {
      calls++;
      return x * 100;
    });
    const input = new InputNode();
    const shared = expensive.bind(input);
    const dag = add.bind(double.bind(shared), add.bind(shared, shared));
    expect(await dag.execute(1)).toEqual(400);
    expect(calls).toEqual(1);
    expect(await dag.execute(2)).toEqual(800);
    expect(calls).toEqual(2);
  });

  it("constructs each class node once and reuses it across execute calls", async () => {
    const constructed: number[] = [];
    const seen: number[] = [];
    const Counter = deployment(
      class Counter {
        #count = 0;
        constructor(readonly id: number) {
          constructed.push(id);
        }
        next(_x: unknown) {
          seen.push(this.id);
          return ++this.#count;
        }
      },
    );
    const input = new InputNode();
    const a = Counter.bind(1);
    const b = Counter.bind(2);
    const dag = add.bind(a.next.bind(input), b.next.bind(input));
    expect(await dag.execute(0)).toEqual(2);
    expect(await dag.execute(0)).toEqual(4);
    expect(await dag.execute(0)).toEqual(6);
    expect(constructed.sort()).toEqual([1, 2]);
    expect(seen.length).toEqual(6);
  });

  it("shares one instance between two methods of one class node in one graph", async () => {
    let constructions = 0;
    const Store = deployment(
      class Store {
        #items: string[] = [];
        constructor() {
          constructions++;
        }
        put(x: string) {
          this.#items.push(x);
          return this.#items.length;
        }
        size(_after: number) {
          return this.#items.length;
        }
      },
    );
    const store = Store.bind();
    const input = new InputNode();
    const dag = store.size.bind(store.put.bind(input));
    expect([await dag.execute("a"), await dag.execute("b")]).toEqual([1, 2]);
    expect(constructions).toEqual(1);
  });

  it("runs sync and async functions alike", async () => {
    const syncInc = deployment(function syncInc(x: number) {
      return x + 1;
    });
    const asyncInc = deployment(async function asyncInc(x: number) {
      await Promise.resolve();
      return x + 1;
    });
    const input = new InputNode();
    expect(await asyncInc.bind(syncInc.bind(input)).execute(1)).toEqual(3);
  });

  it("calls a class node used as the root through its __call__", async () => {
    const Greeter = deployment(
      class Greeter {
        constructor(readonly greeting: string) {}
        __call__(name: string, punctuation = "!") {
          return `${this.greeting}, ${name}${punctuation}`;
        }
      },
    );
    const root = Greeter.bind("Hello");
    expect(await root.execute("Ada")).toEqual("Hello, Ada!");
    expect(await root.execute("Ada", "?")).toEqual("Hello, Ada?");
  });

  it("rejects with the user's error, naming the deployment", async () => {
    const boom = deployment(function boom(_x: unknown) {
      throw new TypeError("the input was bad");
    });
    const dag = boom.bind(new InputNode());
    expect(await failure(() => dag.execute(1))).toEqual({ name: "ServeError", code: "user", message: "the input was bad", deployment: "boom" });
    const err = (await dag.execute(1).catch((e) => e)) as ServeError;
    expect([err.causeName, err.causeStack?.split("\n")[0]]).toEqual(["TypeError", "TypeError: the input was bad"]);
  });
});
