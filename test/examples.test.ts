import { describe, expect, it } from "vitest";
import { fileURLToPath } from "node:url";
import tutorialDriver, { dag as tutorial } from "../examples/tutorial/graph.ts";
import diamond from "../examples/diamond/graph.ts";
import contentDriver, { dag as content, plantOnly } from "../examples/content/graph.ts";
import { buildGraph } from "../src/graph/ir.ts";

const root = fileURLToPath(new URL("..", import.meta.url));

describe("the tutorial graph", () => {
  it("answers sum over both models for [\"5\", [1, 2], \"sum\"]", async () => {
    expect(await tutorial.execute("5", [1, 2], "sum")).toEqual("sum(['(1 * (5 + 1.5))', '(2 * (5 + 1.5))'])");
  });

  it("answers max over both models for [\"1\", [0, 2], \"max\"] (JavaScript prints 1 where Python printed 1.0)", async () => {
    expect(await tutorial.execute("1", [0, 2], "max")).toEqual("max(['(1 * (1 + 1))', '(2 * (1 + 1))'])");
  });

  it("reads input[k] as arg[k] when given the whole list as one argument", async () => {
    expect(await tutorial.execute(["5", [1, 2], "sum"])).toEqual("sum(['(1 * (5 + 1.5))', '(2 * (5 + 1.5))'])");
    expect(await tutorial.execute(["1", [0, 2], "max"])).toEqual("max(['(1 * (1 + 1))', '(2 * (1 + 1))'])");
  });

  it("runs independent branches concurrently, taking about its 0.45 s critical path", async () => {
    await tutorial.execute("5", [1, 2], "sum"); // instances are built by now
    const start = performance.now();
    const out = await tutorial.execute("7", [2, 4], "max");
    const seconds = (performance.now() - start) / 1000;
    console.log(`tutorial execute took ${seconds.toFixed(3)} s (critical path 0.45 s, sequential 0.85 s)`);
    expect(out).toEqual("max(['(1 * (7 + 3))', '(2 * (7 + 3))'])");
    expect(seconds).toBeGreaterThanOrEqual(0.44); // the critical path's sleeps; how close it stays is measured by `npm run bench -- tutorial`
  });

  it("runs through the DAGDriver default export's execute, with several arguments or one list", async () => {
    expect(await tutorialDriver.execute("5", [1, 2], "sum")).toEqual("sum(['(1 * (5 + 1.5))', '(2 * (5 + 1.5))'])");
    expect(await tutorialDriver.execute(["1", [0, 2], "max"])).toEqual("max(['(1 * (1 + 1))', '(2 * (1 + 1))'])");
  });

  it("builds into five deployments plus the DAGDriver, which keeps its routePrefix and replica count", () => {
    const ir = buildGraph(tutorialDriver);
    expect([...ir.deployments.keys()]).toEqual(["Model", "Model_1", "Combiner", "preprocessor", "avgPreprocessor", "DAGDriver"]);
    expect(ir.deployments.get("DAGDriver")!.def.options).toEqual({ name: "DAGDriver", maxOngoingRequests: 100, routePrefix: "/my-dag", numReplicas: 2 });
  });
});

describe("the REP diamond", () => {
  it("adds m1.forward(input[0]), m2.forward(input[1]) and input[2]: execute(1, 2, 3) is 8", async () => {
    expect(await diamond.execute(1, 2, 3)).toEqual(8);
  });

  it("gives the same answer for one list argument", async () => {
    expect(await diamond.execute([1, 2, 3])).toEqual(8);
  });
});

describe("the content-understanding graph", () => {
  const apple = "https://example.com/apple.jpg";
  const analysis = { segmentation: { segments: 6, brightFraction: 0.488 }, integrity: { ok: true } };

  it("dispatches to the fruit, car or plant classifier by metadata", async () => {
    for (const label of ["fruit", "car", "plant"]) {
      expect(await content.execute({ url: apple, metadata: label })).toEqual({
        classification: { label, weights: `weights/${label}-v1`, score: 0.4988 },
        ...analysis,
      });
    }
  });

  it("dispatches any other metadata to the general classifier", async () => {
    for (const metadata of ["boat", ""]) {
      expect(await content.execute({ url: apple, metadata })).toEqual({
        classification: { label: "general", weights: "weights/general-v1", score: 0.4988 },
        ...analysis,
      });
    }
  });

  it("computes a different image for a different URL", async () => {
    expect(await content.execute({ url: "https://example.com/car.jpg", metadata: "car" })).toEqual({
      classification: { label: "car", weights: "weights/car-v1", score: 0.4985 },
      segmentation: { segments: 4, brightFraction: 0.505 },
      integrity: { ok: true },
    });
  });

  it("always uses the plant classifier in the plantOnly node, whose constant argument travels with the call", async () => {
    expect(await plantOnly.execute({ url: apple, metadata: "fruit" })).toEqual({ label: "plant", weights: "weights/plant-v1", score: 0.4988 });
  });

  it("names deployments in post-order, each classifier by its options.name", () => {
    expect([...buildGraph(contentDriver).deployments.keys()]).toEqual([
      "Preprocessor", // a method node's instance comes before its arguments
      "Downloader",
      "segmentation",
      "integrity",
      "FruitClassifier",
      "CarClassifier",
      "PlantClassifier",
      "GeneralClassifier",
      "Dispatcher",
      "aggregate",
      "DAGDriver",
    ]);
  });
});

describe("running an example file with bun", () => {
  for (const [file, printed] of [
    ["examples/tutorial/graph.ts", "sum(['(1 * (5 + 1.5))', '(2 * (5 + 1.5))'])\nmax(['(1 * (1 + 1))', '(2 * (1 + 1))'])\n"],
    ["examples/diamond/graph.ts", "8\n"],
  ] as const) {
    it(`prints the results of ${file} and exits 0`, async () => {
      await using proc = Bun.spawn([process.execPath, file], { cwd: root, stdout: "pipe", stderr: "pipe" });
      const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
      expect({ stdout, stderr, code }).toEqual({ stdout: printed, stderr: "", code: 0 });
    });
  }

  it("prints the content graph's analysis of apple.jpg and exits 0", async () => {
    await using proc = Bun.spawn([process.execPath, "examples/content/graph.ts"], { cwd: root, stdout: "pipe", stderr: "pipe" });
    const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    expect({ stderr, code }).toEqual({ stderr: "", code: 0 });
    expect(stdout).toContain('label: "fruit"');
  });
});
