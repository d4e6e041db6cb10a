import { spawnSync } from "node:child_process";
import { readFileSync, renameSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";

/**
 * Compiles dist/serve-bin once for the tests that run the binary, with
 * package.json's "build" script's own flags (read from it, so the tests run
 * the binary users get: --compile-autoload-package-json lets it resolve a
 * graph's own packages, test/binary-deps.test.ts; --bytecode --format=esm
 * --splitting spares every process the parsing of the bundle and the code
 * its role does not import, test/binary.test.ts).
 * Built under a temporary name and renamed into place: a run that is spawning
 * the old binary meanwhile (another test run in the same tree) keeps its file
 * instead of failing with ETXTBSY.
 */
export default function setup(): void {
  const root = resolve(import.meta.dirname, "..");
  const bun = join(root, "node_modules/.bin/bun");
  const tmp = `dist/serve-bin.${process.pid}.tmp`;
  const script: string = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).scripts.build;
  const [program, ...args] = script.split(/\s+/);
  const out = args.indexOf("--outfile");
  if (program !== "bun" || out < 0) throw new Error(`package.json's build script is not "bun build … --outfile F": ${script}`);
  args[out + 1] = tmp;
  const r = spawnSync(bun, args, { cwd: root, stdio: "inherit" });
  if (r.status !== 0) {
    rmSync(join(root, tmp), { force: true });
    throw new Error("bun build --compile failed");
  }
  renameSync(join(root, tmp), join(root, "dist/serve-bin"));
}
