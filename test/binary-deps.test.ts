/**
 * The compiled binary serving a graph that imports its own dependencies from
 * its own node_modules: a package resolved through its `exports` map (ESM,
 * CJS via createRequire, a subpath, import.meta.resolve) and onnxruntime-node's
 * native addon, loaded in every replica. Served from the app's directory and
 * from another working directory. Skipped, loudly, only when onnxruntime-node
 * cannot be installed from the npm registry.
 */
import { describe, expect, it } from "vitest";
import { join } from "node:path";
import { onnxruntimeCache, writeApp } from "./app-deps.ts";
import { postJSON, startCompiled, stopCleanly, tempDir, waitFor, type RunningServer } from "./harness.ts";

const ort = onnxruntimeCache();
if ("skip" in ort) console.warn(`\n*** test/binary-deps.test.ts SKIPPED: ${ort.skip} ***\n`);

/** Real inference through the served graph, until both model replicas have answered. */
async function checkServes(server: RunningServer): Promise<void> {
  const pids = new Set<number>();
  await waitFor(
    async () => {
      const res = await postJSON(server.url, [1, 2.5, -4]);
      const body = await res.json();
      expect({ status: res.status, y: body.y, resolved: body.resolved }, JSON.stringify(body)).toEqual({
        status: 200,
        y: [3, 7.5, -12],
        resolved: { esm: "esm", cjs: "cjs", metaResolve: "tiny-exports/lib/esm.js", requireResolve: "onnxruntime-node/dist/index.js" },
      });
      pids.add(body.pid);
      return pids.size === 2;
    },
    "both Scale replicas to answer",
  );
}

describe.skipIf("skip" in ort)("the compiled binary serving a graph with its own node_modules", () => {
  it("resolves an exports-map package and loads onnxruntime-node in every replica, run from the app's directory", async () => {
    await using app = tempDir("sb-deps-");
    writeApp(app.path, (ort as { modules: string }).modules);
    const server = await startCompiled("graph.ts", app.path);
    try {
      await checkServes(server);
    } finally {
      await stopCleanly(server);
    }
  });

  it("does the same when started from another working directory", async () => {
    await using app = tempDir("sb-deps-");
    await using elsewhere = tempDir("sb-cwd-");
    writeApp(app.path, (ort as { modules: string }).modules);
    const server = await startCompiled(join(app.path, "graph.ts"), elsewhere.path);
    try {
      await checkServes(server);
    } finally {
      await stopCleanly(server);
    }
  });
});
