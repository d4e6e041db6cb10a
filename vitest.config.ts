import { defineConfig } from "vitest/config";
import { BaseSequencer, type TestSpecification } from "vitest/node";
import { fileURLToPath } from "node:url";

/**
 * The files that take longest, longest first (seconds in a 4-worker run). A
 * fresh clone has no timing cache, and vitest then starts the largest files
 * first: the 47-line Swarm test (about 3 minutes of the suite's 4) would start
 * last and end alone. Starting these first lets the short files fill the
 * other workers meanwhile.
 */
const LONGEST_FIRST = [
  "swarm-cluster", // ~200 s: three dockerd nodes, a stack, four phases under load
  "control-limits", // ~60 s: a 40 s crash loop
  "package",
  "runtime-faults",
  "kubernetes-cluster",
  "docker",
  "shm-runtime",
  "plan-off-loop",
  "ops-live",
  "ops-deploy",
  "codec",
  "cli",
  "bench-harness",
  "kubernetes-rollout-traffic",
].map((n) => `/test/${n}.test.ts`);

class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const rank = (f: TestSpecification) => {
      const i = LONGEST_FIRST.findIndex((n) => f.moduleId.endsWith(n));
      return i < 0 ? LONGEST_FIRST.length : i;
    };
    const base = await super.sort(files);
    return base.map((f, i) => ({ f, i, r: rank(f) })).sort((a, b) => a.r - b.r || a.i - b.i).map((x) => x.f);
  }
}

export default defineConfig({
  resolve: { alias: { "serve-bin": fileURLToPath(new URL("./src/index.ts", import.meta.url)) } },
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/global-setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "threads",
    fileParallelism: true,
    // Most files wait on child processes, sockets and Docker, not on CPU: four at a time on 2 cores
    // (vitest's default here is availableParallelism() - 1 = 1). Every test scopes what it checks
    // to the processes, files and names it made, so files can share the machine.
    maxWorkers: 4,
    sequence: { sequencer: LongestFirst },
  },
});
