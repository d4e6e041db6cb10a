import { spawnSync } from "node:child_process";
import { renameSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";

/**
 * Compiles dist/serve-bin once for the tests that run the binary. Built under
 * a temporary name and renamed into place: a run that is spawning the old
 * binary meanwhile (another test run in the same tree) keeps its file instead
 * of failing with ETXTBSY. The flags are package.json's "build" script's:
 * without --compile-autoload-package-json the binary cannot resolve a graph's
 * own packages (test/binary-deps.test.ts).
 */
export default function setup(): void {
  const root = resolve(import.meta.dirname, "..");
  const bun = join(root, "node_modules/.bin/bun");
  const tmp = `dist/serve-bin.${process.pid}.tmp`;
  const r = spawnSync(bun, ["build", "--compile", "--compile-autoload-package-json", "src/cli/main.ts", "--outfile", tmp], { cwd: root, stdio: "inherit" });
  if (r.status !== 0) {
    rmSync(join(root, tmp), { force: true });
    throw new Error("bun build --compile failed");
  }
  renameSync(join(root, tmp), join(root, "dist/serve-bin"));
}
