import { spawnSync } from "node:child_process";
import { join, resolve } from "node:path";

/** Compiles dist/serve-bin once for the tests that run the binary. */
export default function setup(): void {
  const root = resolve(import.meta.dirname, "..");
  const bun = join(root, "node_modules/.bin/bun");
  const r = spawnSync(bun, ["build", "--compile", "src/cli/main.ts", "--outfile", "dist/serve-bin"], { cwd: root, stdio: "inherit" });
  if (r.status !== 0) throw new Error("bun build --compile failed");
}
