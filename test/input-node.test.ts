import { describe, expect, it } from "vitest";
import { deployment, InputNode, ServeError } from "serve-bin";
import { buildGraph } from "../src/graph/ir.ts";
import { failure } from "./failure.ts";

const echo = deployment(function echo(...xs: unknown[]) {
  return xs;
});


describe("selecting part of the input", () => {
  it("reads input[k] as the k-th argument when execute gets several arguments", async () => {
    const input = new InputNode();
    const dag = echo.bind(input[2], input[0], input[1]);
    expect(await dag.execute("a", "b", "c")).toEqual(["c", "a", "b"]);
  });

  it("reads input[k] as arg[k] when execute gets one argument", async () => {
    const input = new InputNode();
    const dag = echo.bind(input[1], input[0]);
    expect(await dag.execute(["a", "b"])).toEqual(["b", "a"]);
    expect(await dag.execute({ 0: "zero", 1: "one" })).toEqual(["one", "zero"]);
  });

  it("reads input.key as a property of the one argument", async () => {
    const input = new InputNode();
    const dag = echo.bind(input.url, input.metadata);
    expect(await dag.execute({ url: "https://x/y.jpg", metadata: "fruit" })).toEqual(["https://x/y.jpg", "fruit"]);
  });

  it("reads input.get(k) the same as input[k] and input.key", async () => {
    const input = new InputNode();
    const dag = echo.bind(input.get(0), input.get("1"), input.get("name"));
    expect(await dag.execute({ 0: "by number", 1: "by numeric string", name: "by name" })).toEqual(["by number", "by numeric string", "by name"]);
    expect(await dag.execute("x", "y")).toEqual(["x", "y", undefined]);
  });

  it("selects fields named like the node's own members: input.kind, input.key, input.a.key, input.constructor", async () => {
    const input = new InputNode();
    const dag = echo.bind(input.kind, input.key, input.a.key, input.a.of, input.constructor, input.sourceFile);
    expect(await dag.execute({ kind: "image", key: "k1", a: { key: "k2", of: "o" }, constructor: "c", sourceFile: "s" })).toEqual(["image", "k1", "k2", "o", "c", "s"]);
  });

  it("reaches into nested values: input[0].x and input.a.b[1]", async () => {
    const input = new InputNode();
    const dag = echo.bind(input[0].x, input[1].a.b[1]);
    expect(await dag.execute({ x: 7 }, { a: { b: ["p", "q"] } })).toEqual([7, "q"]);

    const one = new InputNode();
    const single = echo.bind(one.a.b[1], one.a.c);
    expect(await single.execute({ a: { b: [10, 20], c: "see" } })).toEqual([20, "see"]);
  });

  it("gives undefined for a key the input does not have, including under a missing parent", async () => {
    const input = new InputNode();
    const dag = echo.bind(input.missing, input.missing.deeper);
    expect(await dag.execute({ other: 1 })).toEqual([undefined, undefined]);
  });

  it("passes the whole InputNode as the one argument, or all arguments as a list", async () => {
    const input = new InputNode();
    const dag = echo.bind(input);
    expect(await dag.execute(5)).toEqual([5]);
    expect(await dag.execute({ a: 1 })).toEqual([{ a: 1 }]);
    expect(await dag.execute([1, 2])).toEqual([[1, 2]]);
    expect(await dag.execute(1, 2)).toEqual([[1, 2]]);
    expect(await dag.execute()).toEqual([[]]);
  });

  it("fills selections placed inside objects, arrays and maps", async () => {
    const input = new InputNode();
    const dag = echo.bind({ first: input[0], rest: [input[1], "constant"] }, new Map<string, unknown>([["k", input[0]]]));
    expect(await dag.execute("a", "b")).toEqual([{ first: "a", rest: ["b", "constant"] }, new Map([["k", "a"]])]);
  });

  it("uses one InputNode across a graph of several nodes", async () => {
    const add = deployment(function add(a: number, b: number) {
      return a + b;
    });
    const input = new InputNode();
    const dag = add.bind(add.bind(input[0], input[1]), add.bind(input.get(1), input[2]));
    expect(await dag.execute(1, 10, 100)).toEqual(121);
    expect(buildGraph(dag).nodes.filter((n) => n.kind === "input")).toEqual([{ id: 0, kind: "input" }]);
  });

  it("refuses a graph with a second InputNode, saying to select from one", async () => {
    const a = new InputNode();
    const b = new InputNode();
    const dag = echo.bind(a[0], b[0]);
    const expected = {
      name: "ServeError",
      code: "build",
      message: "the graph uses two InputNodes; create one `new InputNode()` and select parts of it with input[0], input.key",
    };
    expect(await failure(() => dag.execute(1))).toEqual(expected);
    expect(await failure(() => buildGraph(dag))).toEqual(expected);
    expect(await failure(() => echo.bind(a, { nested: [b] }).execute(1))).toEqual(expected);
  });

  it("is not awaitable: awaiting the input or a selection says to call execute", async () => {
    const input = new InputNode();
    const message = (kind: string) => `a ${kind} node is not awaitable: call \`await node.execute(...args)\` to run the graph, or serve it with \`serve-bin run\``;
    expect(await failure(async () => await input)).toEqual({ name: "ServeError", code: "build", message: message("input") });
    expect(await failure(async () => await input[0])).toEqual({ name: "ServeError", code: "build", message: message("select") });
  });
});
