/** `serve-bin graph` (SPEC §10): the bound graph as Mermaid or DOT, from the compiled binary. */
import { describe, expect, it } from "vitest";
import { join } from "node:path";
import { describeGraph } from "../src/graph/describe.ts";
import { loadGraph } from "../src/runtime/load-graph.ts";
import { EXAMPLES, runCli } from "./harness.ts";

const TUTORIAL = join(EXAMPLES, "tutorial/graph.ts");

describe("serve-bin graph", () => {
  it("describes the tutorial: deployments with the ingress first, the driver's calls, the combiner's handles, and values passed on", async () => {
    const view = describeGraph(await loadGraph(TUTORIAL, "default"));
    expect(view).toEqual({
      ingress: "DAGDriver",
      nodes: [
        { name: "DAGDriver", kind: "class", ingress: true },
        { name: "preprocessor", kind: "function", ingress: false },
        { name: "avgPreprocessor", kind: "function", ingress: false },
        { name: "Combiner", kind: "class", ingress: false },
        { name: "Model", kind: "class", ingress: false },
        { name: "Model_1", kind: "class", ingress: false },
      ],
      edges: [
        { from: "DAGDriver", to: "preprocessor", kind: "call" },
        { from: "DAGDriver", to: "avgPreprocessor", kind: "call" },
        { from: "DAGDriver", to: "Combiner", kind: "call", label: "run" },
        { from: "Combiner", to: "Model", kind: "handle" },
        { from: "Combiner", to: "Model_1", kind: "handle" },
        { from: "preprocessor", to: "Combiner", kind: "data" },
        { from: "avgPreprocessor", to: "Combiner", kind: "data" },
      ],
    });
  });

  it("prints the tutorial as a Mermaid flowchart by default", async () => {
    const r = await runCli(["graph", TUTORIAL], { compiled: true });
    expect(r).toEqual({
      code: 0,
      stderr: "",
      stdout: `flowchart LR
  n0[["DAGDriver (ingress)"]]
  n1(["preprocessor"])
  n2(["avgPreprocessor"])
  n3["Combiner"]
  n4["Model"]
  n5["Model_1"]
  n0 --> n1
  n0 --> n2
  n0 -->|run| n3
  n3 ==>|handle| n4
  n3 ==>|handle| n5
  n1 -.-> n3
  n2 -.-> n3
`,
    });
  });

  it("prints Graphviz DOT with --format dot", async () => {
    const r = await runCli(["graph", TUTORIAL, "--format", "dot"], { compiled: true });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`digraph serve_bin {
  rankdir=LR;
  node [shape=box, fontname=Helvetica];
  "DAGDriver" [label="DAGDriver\\n(ingress)", style=bold];
  "preprocessor" [label="preprocessor", style=rounded];
  "avgPreprocessor" [label="avgPreprocessor", style=rounded];
  "Combiner" [label="Combiner"];
  "Model" [label="Model"];
  "Model_1" [label="Model_1"];
  "DAGDriver" -> "preprocessor";
  "DAGDriver" -> "avgPreprocessor";
  "DAGDriver" -> "Combiner" [label="run"];
  "Combiner" -> "Model" [style=bold, label="handle"];
  "Combiner" -> "Model_1" [style=bold, label="handle"];
  "preprocessor" -> "Combiner" [style=dashed];
  "avgPreprocessor" -> "Combiner" [style=dashed];
}
`);
  });

  it("draws a graph that is not an ingress as served: behind the implicit DAGDriver", async () => {
    const r = await runCli(["graph", join(EXAMPLES, "diamond/graph.ts"), "--format", "mermaid"], { compiled: true });
    expect(r.stdout.split("\n").slice(1, 5)).toEqual(['  n0[["DAGDriver (ingress)"]]', '  n1["Model"]', '  n2["Model_1"]', '  n3(["ensemble"])']);
    expect(r.stdout).toContain("  n0 -->|forward| n1\n  n0 -->|forward| n2\n  n0 --> n3\n  n1 -.-> n3\n  n2 -.-> n3\n");
  });

  it("refuses an unknown format, a missing file and a missing export with exit 2 and what to fix", async () => {
    expect(await runCli(["graph", TUTORIAL, "--format", "svg"], { compiled: true })).toMatchObject({ code: 2, stderr: expect.stringContaining('--format takes mermaid or dot, not "svg"') });
    expect(await runCli(["graph", "nope.ts"], { compiled: true })).toMatchObject({ code: 2, stderr: expect.stringContaining("no file at nope.ts") });
    expect(await runCli(["graph", `${TUTORIAL}:nothing`], { compiled: true })).toMatchObject({ code: 2, stderr: expect.stringContaining('has no export "nothing"') });
    expect(await runCli(["graph"], { compiled: true })).toMatchObject({ code: 2, stderr: expect.stringContaining("graph takes one graph module") });
  });
});
