/**
 * The compiled binary, run from a directory with no node_modules: it serves
 * the seed examples over real HTTP, one child process per replica, and leaves
 * nothing behind after SIGTERM; and a graph of its own that uses zod through
 * serve-bin's `z`, which the bytecode-compiled binary must load as from source.
 */
import { describe, expect, it } from "vitest";
import { copyFileSync, existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { EXAMPLES, childPids, postJSON, runCli, startCompiled, stopCleanly, tempDir } from "./harness.ts";


/** A directory with a copy of an example and no node_modules anywhere above it. */
function exampleDir(path: string, example: string) {
  copyFileSync(join(EXAMPLES, example, "graph.ts"), join(path, "graph.ts"));
  for (let d = path; ; d = dirname(d)) {
    expect(existsSync(join(d, "node_modules")), `${d}/node_modules must not exist`).toBe(false);
    if (dirname(d) === d) break;
  }
}

describe("the compiled binary serving the tutorial graph from a directory without node_modules", () => {
  it("answers POST /my-dag, runs one child per replica, and exits 0 on SIGTERM leaving nothing", async () => {
    await using dir = tempDir();
    exampleDir(dir.path, "tutorial");
    const server = await startCompiled("graph.ts", dir.path);
    try {
      const sum = await postJSON(`${server.url}/my-dag`, ["5", [1, 2], "sum"]);
      expect({ status: sum.status, type: sum.headers.get("content-type"), body: await sum.text() }).toEqual({
        status: 200,
        type: "text/plain; charset=utf-8",
        body: "sum(['(1 * (5 + 1.5))', '(2 * (5 + 1.5))'])",
      });
      const max = await postJSON(`${server.url}/my-dag`, ["1", [0, 2], "max"]);
      expect({ status: max.status, body: await max.text() }).toEqual({ status: 200, body: "max(['(1 * (1 + 1))', '(2 * (1 + 1))'])" });

      const status = (await (await fetch(`${server.adminUrl}/api/applications`)).json()) as {
        applications: Record<string, { status: string; routePrefix: string; deployments: Record<string, { status: string; targetReplicas: number; replicas: { id: string; pid: number; state: string; restarts: number }[] }> }>;
      };
      const replica = (id: string) => ({ id, pid: expect.any(Number), state: "RUNNING", restarts: 0 });
      const healthy = (...ids: string[]) => ({ status: "HEALTHY", message: "", targetReplicas: ids.length, restarts: 0, backoffS: 0, replicas: ids.map(replica) });
      expect(status).toEqual({
        applications: {
          default: {
            status: "RUNNING",
            message: "",
            routePrefix: "/my-dag",
            deployments: {
              Model: healthy("Model#0"),
              Model_1: healthy("Model_1#0"),
              Combiner: healthy("Combiner#0"),
              preprocessor: healthy("preprocessor#0"),
              avgPreprocessor: healthy("avgPreprocessor#0"),
              DAGDriver: healthy("DAGDriver#0", "DAGDriver#1"),
            },
          },
        },
      });
      const reported = Object.values(status.applications.default!.deployments).flatMap((d) => d.replicas.map((r) => r.pid));
      const children = childPids(server.proc.pid);
      expect(children.length).toBe(7);
      expect([...children].sort()).toEqual([...reported].sort());

      const health = await fetch(`${server.url}/-/healthz`);
      expect({ status: health.status, body: await health.text() }).toEqual({ status: 200, body: "ok" });
      const routes = await fetch(`${server.url}/-/routes`);
      expect({ status: routes.status, body: await routes.json() }).toEqual({ status: 200, body: { "/my-dag": "default" } });
    } finally {
      await stopCleanly(server);
    }
  });
});

describe("the compiled binary serving the content-understanding graph", () => {
  it("dispatches to the classifier the metadata names, over HTTP at /content", async () => {
    await using dir = tempDir();
    exampleDir(dir.path, "content");
    const server = await startCompiled("graph.ts", dir.path);
    try {
      const analysis = { segmentation: { segments: 6, brightFraction: 0.488 }, integrity: { ok: true } };
      for (const [metadata, label] of [["fruit", "fruit"], ["car", "car"], ["plant", "plant"], ["boat", "general"]]) {
        const res = await postJSON(`${server.url}/content`, { url: "https://example.com/apple.jpg", metadata });
        expect({ status: res.status, type: res.headers.get("content-type"), body: await res.json() }).toEqual({
          status: 200,
          type: "application/json",
          body: { classification: { label, weights: `weights/${label}-v1`, score: 0.4988 }, ...analysis },
        });
      }
      // 4 classifiers, downloader, preprocessor, segmentation, integrity, dispatcher, aggregate, DAGDriver
      expect(childPids(server.proc.pid).length).toBe(11);
      const routes = await fetch(`${server.url}/-/routes`);
      expect(await routes.json()).toEqual({ "/content": "default" });
    } finally {
      await stopCleanly(server);
    }
  });
});

/** A graph that uses zod through serve-bin's `z` (types and runtime) and sets options the schema checks. */
const ZOD_GRAPH = `import { DAGDriver, deployment, InputNode, z, zodRequest } from "serve-bin";

const Order = z.object({ item: z.string().min(1), count: z.int().positive() });
type Order = z.infer<typeof Order>;

const price = deployment(function price(order: Order): string {
  return \`\${order.count} × \${order.item}\`;
}, { maxOngoingRequests: 3 });

export default DAGDriver.options({ routePrefix: "/order", numReplicas: 1 }).bind(price.bind(new InputNode()), { httpAdapter: zodRequest(Order) });
`;

describe("the compiled binary (built with --bytecode) and a graph that uses zod", () => {
  it("serves a graph whose adapter and types come from serve-bin's z, and answers 422 with zod's issues", async () => {
    await using dir = tempDir();
    writeFileSync(join(dir.path, "graph.ts"), ZOD_GRAPH);
    const server = await startCompiled("graph.ts", dir.path);
    try {
      const ok = await postJSON(`${server.url}/order`, { item: "pear", count: 2 });
      expect({ status: ok.status, body: await ok.text() }).toEqual({ status: 200, body: "2 × pear" });
      const bad = await postJSON(`${server.url}/order`, { item: "", count: 0 });
      const body = (await bad.json()) as { error: string; issues: { path: unknown[] }[] };
      expect({ status: bad.status, error: body.error, paths: body.issues.map((i) => i.path) }).toEqual({ status: 422, error: "invalid", paths: [["item"], ["count"]] });
    } finally {
      await stopCleanly(server);
    }
  });

  it("refuses a graph whose options break the schema, naming the field, and exits 2", async () => {
    await using dir = tempDir();
    writeFileSync(join(dir.path, "graph.ts"), ZOD_GRAPH.replace("maxOngoingRequests: 3", "maxOngoingRequests: 0"));
    const r = await runCli(["run", "graph.ts", "--port", "0", "--admin-port", "0"], { cwd: dir.path, compiled: true });
    expect(r.code).toBe(2);
    expect(r.stderr + r.stdout).toContain("invalid options for deployment price: maxOngoingRequests: expected a whole number ≥ 1");
  });
});
