/**
 * The compiled binary, run from a directory with no node_modules: it serves
 * the seed examples over real HTTP, one child process per replica, and leaves
 * nothing behind after SIGTERM.
 */
import { describe, expect, it } from "vitest";
import { copyFileSync, existsSync, readFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { EXAMPLES, childPids, postJSON, startCompiled, stopCleanly, tempDir } from "./harness.ts";


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
