import { join, resolve } from "node:path";

export const ROOT = resolve(import.meta.dirname, "../..");
export const BENCH = join(ROOT, "bench");
export const FIXTURES = join(BENCH, "fixtures");
export const LIB = join(BENCH, "lib");
export const CLI = join(ROOT, "src/cli/main.ts");
export const BINARY = join(ROOT, "dist/serve-bin");
export const EXAMPLES = join(ROOT, "examples");
/** The Bun running the bench; every Bun child is started with it. */
export const BUN = process.execPath;
