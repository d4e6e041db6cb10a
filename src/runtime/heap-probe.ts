/**
 * A diagnostic for `bench/alloc-probe.ts`: with SERVE_BIN_HEAP_PROBE_DIR set,
 * SIGUSR2 makes this process write its heap's object counts by type
 * (`heapStats()` of `bun:jsc`) to DIR/heap.<pid>.json. Without the variable
 * nothing is installed and SIGUSR2 keeps its default.
 *
 * @example SERVE_BIN_HEAP_PROBE_DIR=/tmp/h serve-bin run graph.ts & kill -USR2 <pid>; cat /tmp/h/heap.<pid>.json
 */
import { renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { heapStats } from "bun:jsc";

export function installHeapProbe(): void {
  const dir = process.env.SERVE_BIN_HEAP_PROBE_DIR;
  if (!dir) return;
  process.on("SIGUSR2", () => {
    const file = join(dir, `heap.${process.pid}.json`);
    // Written whole, then renamed: a reader never sees half a file.
    writeFileSync(`${file}.tmp`, JSON.stringify(heapStats()));
    renameSync(`${file}.tmp`, file);
  });
}
