import { fileURLToPath } from "node:url";

/**
 * How to start this same program with `args` (a replica, a planner),
 * compiled or from source: the compiled binary is its own CLI, from source
 * Bun needs the CLI entry's path.
 */
export function selfCommand(...args: string[]): string[] {
  // Compiled, this module lives in Bun's embedded filesystem (/$bunfs/…).
  if (fileURLToPath(import.meta.url).startsWith("/$bunfs/")) return [process.execPath, ...args];
  return [process.execPath, fileURLToPath(new URL("../cli/main.ts", import.meta.url)), ...args];
}
