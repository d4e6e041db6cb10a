/**
 * Imports point one way (CONVENTIONS.md): wire ← api ← graph ← runtime ←
 * http ← cli, with config and error.ts used by all; and what a replica loads
 * through `import … from "serve-bin"` holds no server, controller or admin API.
 */
import { describe, expect, it } from "vitest";
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join, relative, resolve, dirname } from "node:path";
import { ROOT, tempDir } from "./harness.ts";

const SRC = join(ROOT, "src");

/** The src/ folder each relative import of each file points into. */
function importsOf(dir: string): { file: string; target: string }[] {
  const out: { file: string; target: string }[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) {
      out.push(...importsOf(path));
      continue;
    }
    if (!name.endsWith(".ts")) continue;
    const text = readFileSync(path, "utf8");
    for (const m of text.matchAll(/^(?:import|export)\s[^;]*?from\s+"(\.[^"]+)"/gm)) {
      if (/^import\s+type\s/.test(m[0])) continue; // types leave nothing behind at run time
      out.push({ file: relative(SRC, path), target: relative(SRC, resolve(dirname(path), m[1]!)) });
    }
  }
  return out;
}

const top = (p: string) => (p.includes("/") ? p.split("/")[0]! : p);

describe("layers", () => {
  it("wire, api, graph and config import nothing from the layers above them", () => {
    const allowed: Record<string, string[]> = {
      wire: ["wire"],
      config: ["config", "error.ts"],
      api: ["api", "wire", "config", "error.ts", "http-error.ts"],
      graph: ["graph", "api", "wire", "config", "error.ts"],
    };
    const wrong = Object.entries(allowed).flatMap(([layer, ok]) =>
      importsOf(join(SRC, layer))
        .filter((i) => !ok.includes(top(i.target)))
        .map((i) => `${i.file} → ${i.target}`),
    );
    expect(wrong).toEqual([]);
  });

  it("runtime never imports http or cli", () => {
    const wrong = importsOf(join(SRC, "runtime")).filter((i) => ["http", "cli"].includes(top(i.target)));
    expect(wrong).toEqual([]);
  });

  it('"serve-bin" as a replica loads it holds no server, controller or admin API: serve.run loads them on first use', async () => {
    await using out = tempDir("sb-layers-");
    const built = await Bun.build({ entrypoints: [join(SRC, "index.ts")], outdir: out.path, target: "bun", splitting: true, packages: "external" });
    expect(built.success).toBe(true);
    const entry = built.outputs.find((o) => o.kind === "entry-point")!;
    const text = await entry.text();
    for (const name of ["class Controller", "class ChangePath", "class Server", "function createAdmin", "class LocalEngine"]) expect(text).not.toContain(name);
    const chunks = await Promise.all(built.outputs.filter((o) => o.kind === "chunk").map((o) => o.text()));
    expect(chunks.some((c) => c.includes("class ChangePath"))).toBe(true);
  });
});
