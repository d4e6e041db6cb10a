import { describe, expect, it } from "vitest";
import { DAGDriver, deployment, Deployment, InputNode, ServeError, type DeploymentHandle } from "serve-bin";
import { buildGraph } from "../src/graph/ir.ts";

/** The error that `run` throws or rejects with, as plain data. */
async function failure(run: () => unknown): Promise<Record<string, unknown>> {
  try {
    await run();
  } catch (e) {
    const err = e as ServeError;
    return { name: err.name, code: err.code, message: err.message, deployment: err.deployment, ...(err.issues && { issues: err.issues }) };
  }
  throw new Error("expected a failure, got none");
}

const echo = deployment(function echo(...xs: unknown[]) {
  return xs;
});

class Model {
  constructor(readonly weight: number) {}
  forward(x: number) {
    return x * this.weight;
  }
  backward(x: number) {
    return x / this.weight;
  }
}
const ModelD = deployment(Model);

class Widget {
  size = 1;
}

describe("binding a method", () => {
  it("fails at once for a method the class does not have, listing the methods it has", async () => {
    const node = ModelD.bind(1) as any;
    expect(await failure(() => node.nope.bind())).toEqual({
      name: "ServeError",
      code: "build",
      message: 'Model has no method "nope"; its methods are: forward, backward',
      deployment: "Model",
    });
  });

  it("says (none) for a class without methods", async () => {
    const node = deployment(class Empty {}).bind() as any;
    expect(await failure(() => node.run.bind())).toEqual({
      name: "ServeError",
      code: "build",
      message: 'Empty has no method "run"; its methods are: (none)',
      deployment: "Empty",
    });
  });
});

describe("building a graph", () => {
  it("refuses a second InputNode", async () => {
    const dag = echo.bind(new InputNode()[0], new InputNode()[1]);
    expect(await failure(() => buildGraph(dag))).toEqual({
      name: "ServeError",
      code: "build",
      message: "the graph uses two InputNodes; create one `new InputNode()` and select parts of it with input[0], input.key",
    });
  });

  it("refuses a constant function argument, naming the call and the argument's path", async () => {
    const input = new InputNode();
    const dag = echo.bind(input, () => 1);
    expect(await failure(() => buildGraph(dag))).toEqual({
      name: "ServeError",
      code: "encode",
      message:
        "the constant args[1] of a call to echo is a function, which cannot travel between processes; pass plain data (objects, arrays, strings, numbers, typed arrays, Map, Set, Date)",
      deployment: "echo",
    });
  });

  it("refuses a class instance nested in a constant, naming the method node and the path inside the argument", async () => {
    const input = new InputNode();
    const dag = echo.bind(ModelD.bind(1).forward.bind(input), ModelD.bind(2).forward.bind(input, { opts: [1, new Widget()] }));
    expect(await failure(() => dag.execute(1))).toEqual({
      name: "ServeError",
      code: "encode",
      message:
        "the constant args[1].opts[1] of a call to Model_1.forward is an instance of class Widget, which cannot travel between processes; pass plain data (objects, arrays, strings, numbers, typed arrays, Map, Set, Date)",
      deployment: "Model_1",
    });
  });

  it("accepts every constant the codec carries", async () => {
    const constants = [undefined, null, 1n, new Date(0), new Map([[1, "a"]]), new Set(["s"]), new Uint8Array([1]), new Error("kept"), { a: [1, "x"] }];
    expect(await echo.bind(...constants).execute()).toEqual(constants);
  });

  it("accepts class instances and functions as init args, which never cross the wire", async () => {
    const Holder = deployment(
      class Holder {
        constructor(
          readonly widget: Widget,
          readonly make: () => number,
        ) {}
        read() {
          return [this.widget.size, this.make()];
        }
      },
    );
    expect(await Holder.bind(new Widget(), () => 42).read.bind().execute()).toEqual([1, 42]);
  });

  it("accepts a cyclic init arg without nodes, since init args never cross the wire", async () => {
    interface Tree {
      name: string;
      parent?: Tree;
      children: Tree[];
    }
    const tree: Tree = { name: "root", children: [] };
    tree.children.push({ name: "leaf", parent: tree, children: [] });
    const Walker = deployment(
      class Walker {
        constructor(readonly root: Tree) {}
        names() {
          const leaf = this.root.children[0]!;
          return [this.root.name, leaf.name, leaf.parent!.name];
        }
      },
    );
    expect(await Walker.bind(tree).names.bind().execute()).toEqual(["root", "leaf", "root"]);
  });

  it("refuses a cycle: an object mutated after binding to contain the node that consumes it", async () => {
    const box: Record<string, unknown> = { value: 1 };
    const dag = echo.bind(box);
    box.self = dag;
    expect(await failure(() => dag.execute())).toEqual({
      name: "ServeError",
      code: "build",
      message: "the graph has a cycle through echo; a node cannot depend on its own output, so bind acyclic values",
    });
  });

  it("refuses a cycle through a class's init args", async () => {
    const config: Record<string, unknown> = {};
    const model = ModelD.bind(config as never);
    const dag = model.forward.bind(1);
    config.next = dag;
    expect(await failure(() => buildGraph(dag))).toEqual({
      name: "ServeError",
      code: "build",
      message: "the graph has a cycle through Model.forward; a node cannot depend on its own output, so bind acyclic values",
    });
  });

  it("refuses a constant argument that refers to itself", async () => {
    const loop: Record<string, unknown> = {};
    loop.loop = loop;
    expect(await failure(() => buildGraph(echo.bind(1, loop)))).toEqual({
      name: "ServeError",
      code: "build",
      message: "argument 1 of a call to echo refers to itself (a cycle); bind acyclic values",
      deployment: "echo",
    });
  });

  it("refuses the InputNode as an init arg: init args are fixed at start", async () => {
    const input = new InputNode();
    const message = (i: number) =>
      `init argument ${i} of class deployment Model depends on the InputNode; init args are fixed at start and input arrives per request, so pass it to a method: Model.bind().method.bind(input)`;
    expect(await failure(() => buildGraph(ModelD.bind(input as never).forward.bind(1)))).toEqual({
      name: "ServeError",
      code: "build",
      message: message(0),
      deployment: "Model",
    });
    expect(await failure(() => buildGraph(ModelD.bind(input[0]).forward.bind(input)))).toEqual({
      name: "ServeError",
      code: "build",
      message: message(0),
      deployment: "Model",
    });
  });

  it("refuses anything computed from the InputNode as an init arg, also nested in an object", async () => {
    const input = new InputNode();
    const Pair = deployment(
      class Pair {
        constructor(_a: unknown, _b: unknown) {}
        run() {
          return 0;
        }
      },
    );
    const computed = echo.bind(input.url);
    expect(await failure(() => buildGraph(Pair.bind(1, { nested: [computed] }).run.bind()))).toEqual({
      name: "ServeError",
      code: "build",
      message:
        "init argument 1 of class deployment Pair depends on the InputNode; init args are fixed at start and input arrives per request, so pass it to a method: Pair.bind().method.bind(input)",
      deployment: "Pair",
    });
  });

  it("refuses a method call as an init arg: pass the class node and call it through the handle", async () => {
    const User = deployment(
      class User {
        constructor(readonly model: DeploymentHandle<Model>) {}
        run() {
          return 0;
        }
      },
    );
    expect(await failure(() => buildGraph(User.bind(ModelD.bind(1).forward.bind(2) as never).run.bind()))).toEqual({
      name: "ServeError",
      code: "build",
      message: "init argument 0 of class deployment User is a method call; pass the class node itself and call the method through the handle",
      deployment: "User",
    });
  });

  it("refuses a class node as a call argument", async () => {
    expect(await failure(() => buildGraph(echo.bind(ModelD.bind(1))))).toEqual({
      name: "ServeError",
      code: "build",
      message:
        "argument 0 of a call to echo is a class node; pass it as an init argument of a class (it becomes a handle) or bind one of its methods",
      deployment: "echo",
    });
  });

  it("refuses a class without __call__ at the root, suggesting a method", async () => {
    expect(await failure(() => ModelD.bind(1).execute(2))).toEqual({
      name: "ServeError",
      code: "build",
      message: "Model is used as a value but has no __call__; bind one of its methods instead (e.g. Model.bind(...).forward.bind(...))",
      deployment: "Model",
    });
  });

  it("refuses routePrefix on a deployment that is not the ingress", async () => {
    const input = new InputNode();
    const inner = ModelD.options({ routePrefix: "/model" }).bind(1);
    expect(await failure(() => buildGraph(DAGDriver.bind(inner.forward.bind(input))))).toEqual({
      name: "ServeError",
      code: "build",
      message: "Model sets routePrefix but is not the ingress; set routePrefix only on the DAGDriver (or the class with fetch or __call__) at the graph's root",
      deployment: "Model",
    });
  });

  it("accepts routePrefix on the DAGDriver at the root", () => {
    const input = new InputNode();
    const ir = buildGraph(DAGDriver.options({ routePrefix: "/m" }).bind(ModelD.bind(1).forward.bind(input)));
    expect(ir.deployments.get("DAGDriver")!.def.options.routePrefix).toEqual("/m");
  });
});

describe("deployment options", () => {
  it("refuses numReplicas: -1 with the issue's path", async () => {
    expect(await failure(() => ModelD.options({ numReplicas: -1 }))).toEqual({
      name: "ServeError",
      code: "invalid",
      message: 'invalid options for deployment Model: numReplicas: expected a whole number ≥ 0, or "auto" with an autoscalingConfig',
      deployment: "Model",
      issues: [{ path: ["numReplicas"], message: 'expected a whole number ≥ 0, or "auto" with an autoscalingConfig' }],
    });
  });

  it("refuses an unknown option key, suggesting the closest one", async () => {
    expect(await failure(() => deployment(Model, { numReplica: 2 } as never))).toEqual({
      name: "ServeError",
      code: "invalid",
      message: 'invalid options for deployment Model: (options): unknown key "numReplica" in deployment options: did you mean "numReplicas"?',
      deployment: "Model",
      issues: [{ path: [], message: 'unknown key "numReplica" in deployment options: did you mean "numReplicas"?' }],
    });
  });

  it("refuses options that are not a mapping, even with no keys (a list), saying a mapping is expected", async () => {
    const refusal = {
      name: "ServeError",
      code: "invalid",
      message: "invalid options for deployment Model: (options): expected deployment options as a mapping (key: value)",
      deployment: "Model",
      issues: [{ path: [], message: "expected deployment options as a mapping (key: value)" }],
    };
    expect(await failure(() => deployment(Model, [] as never))).toEqual(refusal);
    expect(await failure(() => deployment(Model, null as never))).toEqual(refusal);
    expect(await failure(() => deployment(Model).options([] as never))).toEqual(refusal);
    expect(await failure(() => deployment(Model).options(null as never))).toEqual(refusal);
    expect(await failure(() => deployment(Model).options(3 as never))).toEqual(refusal);
  });

  it("takes options given as undefined as not given, with or without other options", () => {
    expect(deployment(Model, { numReplicas: undefined, name: undefined }).def.options).toEqual({});
    expect(deployment(Model, { numReplicas: undefined, maxOngoingRequests: 3 }).def.options).toEqual({ maxOngoingRequests: 3 });
    expect((DAGDriver.options({ numReplicas: undefined }) as unknown as Deployment).def.options).toEqual({ name: "DAGDriver", maxOngoingRequests: 100 });
  });

  it("names the deployment whose options are invalid by the name it had, even when the options rename it", async () => {
    expect(await failure(() => ModelD.options({ name: "Big", maxOngoingRequests: 0 }))).toEqual({
      name: "ServeError",
      code: "invalid",
      message: "invalid options for deployment Model: maxOngoingRequests: expected a whole number ≥ 1",
      deployment: "Model",
      issues: [{ path: ["maxOngoingRequests"], message: "expected a whole number ≥ 1" }],
    });
  });
});

describe("awaiting by mistake", () => {
  const notAwaitable = (kind: string) => ({
    name: "ServeError",
    code: "build",
    message: `a ${kind} node is not awaitable: call \`await node.execute(...args)\` to run the graph, or serve it with \`serve-bin run\``,
  });

  it("rejects `await node` for every kind of node, saying to call execute", async () => {
    const input = new InputNode();
    const model = ModelD.bind(1);
    expect(await failure(async () => await echo.bind(1))).toEqual(notAwaitable("function"));
    expect(await failure(async () => await model)).toEqual(notAwaitable("class"));
    expect(await failure(async () => await model.forward.bind(input))).toEqual(notAwaitable("method"));
    expect(await failure(async () => await input)).toEqual(notAwaitable("input"));
  });

  it("rejects awaiting a handle, saying to call remote()", async () => {
    const Caller = deployment(
      class Caller {
        constructor(readonly model: DeploymentHandle<Model>) {}
        async run() {
          return await (this.model as unknown as Promise<unknown>);
        }
      },
    );
    expect(await failure(() => Caller.bind(ModelD.bind(1)).run.bind().execute())).toEqual({
      name: "ServeError",
      code: "build",
      message: "a handle to Model is not awaitable: await handle.remote(...) or handle.method.remote(...)",
    });
  });

  it("refuses handle.remote() on a class without __call__, naming the methods it has", async () => {
    const Caller = deployment(
      class Caller {
        constructor(readonly model: DeploymentHandle<Model>) {}
        async run() {
          return await this.model.remote(1);
        }
      },
    );
    expect(await failure(() => Caller.bind(ModelD.bind(1)).run.bind().execute())).toEqual({
      name: "ServeError",
      code: "build",
      message: "Model has no __call__, so handle.remote() cannot call it; call one of its methods: handle.forward.remote(), handle.backward.remote()",
      deployment: "Model",
    });
  });

  it("refuses a handle method the class does not have", async () => {
    const Caller = deployment(
      class Caller {
        constructor(readonly model: DeploymentHandle<Model>) {}
        async run() {
          return await (this.model as any).predict.remote(1);
        }
      },
    );
    expect(await failure(() => Caller.bind(ModelD.bind(1)).run.bind().execute())).toEqual({
      name: "ServeError",
      code: "build",
      message: 'Model has no method "predict"; its methods are: forward, backward',
      deployment: "Model",
    });
  });
});
