/**
 * The heap probe bench/alloc-probe.ts reads: with SERVE_BIN_HEAP_PROBE_DIR
 * set, SIGUSR2 makes the main process and every replica write their heap's
 * object counts by type, and they go on serving.
 */
import { describe, expect, it } from "vitest";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { EXAMPLES, postJSON, replicasOf, startServer, stopCleanly, tempDir, waitFor } from "./harness.ts";

describe("the heap probe (SERVE_BIN_HEAP_PROBE_DIR)", () => {
  it("writes each process's object counts on SIGUSR2, and the server serves on", async () => {
    await using dir = tempDir();
    const server = await startServer(join(EXAMPLES, "diamond", "graph.ts"), { env: { SERVE_BIN_HEAP_PROBE_DIR: dir.path } });
    try {
      expect((await postJSON(server.url, [1, 2, 3])).status).toBe(200);
      const pids = [server.proc.pid, ...replicasOf(server.proc.pid)];
      expect(pids.length).toBeGreaterThan(1);
      for (const pid of pids) process.kill(pid, "SIGUSR2");
      const files = pids.map((pid) => join(dir.path, `heap.${pid}.json`));
      await waitFor(() => files.every((f) => existsSync(f)), "every process's heap file", 10_000);
      for (const f of files) {
        const stats = JSON.parse(readFileSync(f, "utf8")) as { objectTypeCounts: Record<string, number> };
        expect(stats.objectTypeCounts.Object).toBeGreaterThan(0);
        expect(stats.objectTypeCounts.Function).toBeGreaterThan(0);
      }
      expect((await postJSON(server.url, [1, 2, 3])).status).toBe(200);
    } finally {
      await stopCleanly(server);
    }
  });
});
