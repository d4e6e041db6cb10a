import { fileURLToPath } from "node:url";

const OWN_DIR = fileURLToPath(new URL("..", import.meta.url));

/**
 * The file of the first stack frame outside serve-bin itself: where a node
 * was bound. `serve.run(node)` imports that module in every replica.
 */
export function callerFile(): string | undefined {
  const stack = new Error().stack ?? "";
  for (const line of stack.split("\n").slice(1)) {
    const m = /\(?((?:file:\/\/)?\/[^():]+?\.(?:ts|tsx|mts|js|mjs|jsx)):\d+:\d+\)?\s*$/.exec(line.trim());
    if (!m) continue;
    const file = m[1]!.startsWith("file://") ? fileURLToPath(m[1]!) : m[1]!;
    if (file.startsWith(OWN_DIR) || file.startsWith("/$bunfs/") || file.includes("/node_modules/")) continue;
    return file;
  }
  return undefined;
}
