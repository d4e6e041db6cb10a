/**
 * The real-model examples keep their own node_modules (onnxruntime-node is
 * ~290 MB, gitignored). Tests install them once per example directory with
 * `npm ci`, and skip loudly, saying why, only when the npm registry cannot be
 * reached; any other install failure fails the test run.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export type Deps = { ok: true } | { ok: false; reason: string };

const OFFLINE = /E(NOTFOUND|CONNREFUSED|CONNRESET|TIMEDOUT|AI_AGAIN|NETUNREACH)|network|socket hang up|request to .* failed/i;

function installed(dir: string): boolean {
  const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { dependencies?: Record<string, string> };
  return Object.keys(pkg.dependencies ?? {}).every((name) => existsSync(join(dir, "node_modules", name, "package.json")));
}

/** Makes sure `dir`'s dependencies are installed; `{ ok: false, reason }` only when the registry is unreachable. */
export function exampleDeps(dir: string): Deps {
  if (installed(dir)) return { ok: true };
  // onnxruntime-node's install script would fetch GPU libraries from outside the registry.
  const env = { ...process.env, ONNXRUNTIME_NODE_INSTALL_CUDA: "skip" };
  const r = spawnSync("npm", ["ci", "--no-audit", "--no-fund"], { cwd: dir, env, encoding: "utf8", timeout: 15 * 60_000 });
  const out = `${r.stdout ?? ""}\n${r.stderr ?? ""}`;
  if (r.status === 0 && installed(dir)) return { ok: true };
  if (OFFLINE.test(out)) return { ok: false, reason: `npm ci in ${dir} could not reach the npm registry:\n${out.trim().split("\n").slice(-5).join("\n")}` };
  throw new Error(`npm ci in ${dir} failed (exit ${r.status}):\n${out}`);
}

/** Prints a skip reason so it cannot go unnoticed in the test output. */
export function announceSkip(what: string, reason: string): void {
  console.warn(`\n${"!".repeat(78)}\nSKIPPED: ${what}\n${reason}\n${"!".repeat(78)}\n`);
}

/**
 * Each body through the example's own HTTP adapter and `dag.execute()`, in a
 * Bun subprocess (bench/lib/local-runner.ts: vitest's transformer does not
 * lower the examples' `@batch` decorators, Bun does), results as JSON.
 */
export async function executeLocally(bun: string, graphFile: string, adapter: string, bodies: (Uint8Array | string)[]): Promise<unknown[]> {
  const dir = mkdtempSync(join(tmpdir(), "sb-local-"));
  try {
    const file = join(dir, "bodies.json");
    writeFileSync(file, JSON.stringify(bodies.map((b) => Buffer.from(b).toString("base64"))));
    const proc = Bun.spawn([bun, join(import.meta.dirname, "../bench/lib/local-runner.ts"), graphFile, adapter, "0", file], { stdout: "pipe", stderr: "pipe" });
    const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    if (code !== 0) throw new Error(`local execute of ${graphFile} exited ${code}:\n${stderr}`);
    return (JSON.parse(stdout) as { answers: unknown[] }).answers;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
