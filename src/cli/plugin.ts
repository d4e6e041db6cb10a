import * as api from "../index.ts";

/**
 * Makes `import … from "serve-bin"` inside a user's graph resolve to this very
 * program's API, so a graph run by the binary needs no node_modules for it,
 * and the graph sees the same objects as the runtime.
 */
export function registerServeBinModule(): void {
  Bun.plugin({
    name: "serve-bin",
    setup(build) {
      build.module("serve-bin", () => ({ exports: { ...api }, loader: "object" }));
    },
  });
}
