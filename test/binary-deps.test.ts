/**
 * The compiled binary serving a graph that imports its own dependencies from
 * its own node_modules: a package resolved through its `exports` map (ESM,
 * CJS via createRequire, a subpath, import.meta.resolve) and onnxruntime-node's
 * native addon, loaded in every replica. Served from the app's directory and
 * from another working directory. Skipped, loudly, only when onnxruntime-node
 * cannot be installed from the npm registry.
 */
import { describe, it } from "vitest";
import { join } from "node:path";
import { checkServes, onnxruntimeCache, writeApp } from "./app-deps.ts";
import { startCompiled, stopCleanly, tempDir } from "./harness.ts";

const ort = onnxruntimeCache();
if ("skip" in ort) console.warn(`\n*** test/binary-deps.test.ts SKIPPED: ${ort.skip} ***\n`);

describe.skipIf("skip" in ort)("the compiled binary serving a graph with its own node_modules", () => {
  it("resolves an exports-map package and loads onnxruntime-node in every replica, run from the app's directory", async () => {
    await using app = tempDir("sb-deps-");
    writeApp(app.path, (ort as { modules: string }).modules);
    const server = await startCompiled("graph.ts", app.path);
    try {
      await checkServes(server.url);
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
      await checkServes(server.url);
    } finally {
      await stopCleanly(server);
    }
  });
});
