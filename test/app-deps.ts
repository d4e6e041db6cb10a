/**
 * An application directory of its own, as a user lays it out: graph.ts, a
 * package.json, and a node_modules holding (a) a small pure-JS package with an
 * `exports` map (ESM and CJS entries, a subpath) written here, and (b)
 * onnxruntime-node, a native addon, installed once from the npm registry into
 * test/.cache (gitignored) and hard-linked into each app directory.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect } from "vitest";
import { ROOT, postJSON, waitFor } from "./harness.ts";
import { scaleModel } from "./fixtures/tiny-onnx.ts";

export const ORT_VERSION = "1.30.0";
const CACHE = join(ROOT, "test/.cache/onnxruntime-node");

/**
 * node_modules with onnxruntime-node in the cache, installed on first use;
 * `{ skip }` with the reason when the registry cannot be reached.
 */
export function onnxruntimeCache(): { modules: string } | { skip: string } {
  const modules = join(CACHE, "node_modules");
  if (existsSync(join(modules, "onnxruntime-node/package.json"))) return { modules };
  mkdirSync(CACHE, { recursive: true });
  writeFileSync(join(CACHE, "package.json"), JSON.stringify({ name: "ort-cache", private: true }));
  const r = spawnSync("npm", ["install", "--no-audit", "--no-fund", "--no-save", `onnxruntime-node@${ORT_VERSION}`], {
    cwd: CACHE,
    encoding: "utf8",
    // Its install script would fetch GPU libraries; the CPU build ships in the package.
    env: { ...process.env, ONNXRUNTIME_NODE_INSTALL_CUDA: "skip" },
    timeout: 300_000,
  });
  if (r.status !== 0 || !existsSync(join(modules, "onnxruntime-node/package.json"))) {
    rmSync(modules, { recursive: true, force: true });
    return { skip: `npm install onnxruntime-node@${ORT_VERSION} failed (is the npm registry reachable?): ${(r.stderr || String(r.error)).trim().split("\n").slice(-3).join(" | ")}` };
  }
  return { modules };
}

/** A pure-JS package whose entries only its `exports` map names (no "main"). */
function writeExportsPackage(modules: string): void {
  const pkg = join(modules, "tiny-exports");
  mkdirSync(join(pkg, "lib"), { recursive: true });
  writeFileSync(
    join(pkg, "package.json"),
    JSON.stringify({
      name: "tiny-exports",
      version: "1.0.0",
      type: "module",
      exports: { ".": { import: "./lib/esm.js", require: "./lib/cjs.cjs" }, "./scale": "./lib/scale.js" },
    }),
  );
  writeFileSync(join(pkg, "lib/esm.js"), 'export const flavour = "esm";\n');
  writeFileSync(join(pkg, "lib/cjs.cjs"), 'exports.flavour = "cjs";\n');
  writeFileSync(join(pkg, "lib/scale.js"), "export const toFloats = (xs) => new Float32Array(xs.map(Number));\n");
}

/**
 * The graph: a preprocessor that uses the exports-map package, a model class
 * that loads the ONNX file with onnxruntime-node in its constructor (so every
 * replica loads the addon), each in its own replica process.
 */
const GRAPH = `import { deployment, DAGDriver, InputNode, jsonRequest } from "serve-bin";
import { createRequire } from "node:module";
import { flavour } from "tiny-exports";
import { toFloats } from "tiny-exports/scale";
import * as ort from "onnxruntime-node";

const require = createRequire(import.meta.url);
const resolved = {
  esm: flavour,
  cjs: require("tiny-exports").flavour,
  metaResolve: import.meta.resolve("tiny-exports").replace(/^.*\\/node_modules\\//, ""),
  requireResolve: require.resolve("onnxruntime-node").replace(/^.*\\/node_modules\\//, ""),
};

export const preprocess = deployment(function preprocess(xs: number[]) {
  return toFloats(xs);
});

export const Scale = deployment(class Scale {
  session: Promise<ort.InferenceSession>;
  constructor(file: string) {
    this.session = ort.InferenceSession.create(new URL(file, import.meta.url).pathname);
  }
  async forward(x: Float32Array) {
    const out = await (await this.session).run({ x: new ort.Tensor("float32", x, [x.length]) });
    return { y: [...(out.y!.data as Float32Array)], resolved, pid: process.pid };
  }
});

const input = new InputNode();
const dag = Scale.options({ numReplicas: 2 }).bind("./scale.onnx").forward.bind(preprocess.bind(input));
export default DAGDriver.bind(dag, { httpAdapter: jsonRequest });
`;

/** Fills `dir` with the application: graph.ts, package.json, scale.onnx (y = 3x), node_modules. */
export function writeApp(dir: string, ortModules: string): void {
  writeFileSync(join(dir, "graph.ts"), GRAPH);
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "deps-app", private: true, type: "module", dependencies: { "onnxruntime-node": ORT_VERSION } }));
  writeFileSync(join(dir, "scale.onnx"), scaleModel(3));
  const modules = join(dir, "node_modules");
  mkdirSync(modules);
  // Hard links: a real directory tree (no symlink into the cache) at no copying cost.
  for (const name of readdirSync(ortModules)) {
    if (name.startsWith(".")) continue;
    let r = spawnSync("cp", ["-al", join(ortModules, name), join(modules, name)]);
    if (r.status !== 0) r = spawnSync("cp", ["-a", join(ortModules, name), join(modules, name)]); // another filesystem
    if (r.status !== 0) throw new Error(`cp -a ${name}: ${r.stderr}`);
  }
  writeExportsPackage(modules);
}

/** Real inference through the served graph, until both model replicas have answered. */
export async function checkServes(url: string): Promise<void> {
  const pids = new Set<number>();
  await waitFor(
    async () => {
      const res = await postJSON(url, [1, 2.5, -4]).catch(() => null);
      if (!res) return false; // not listening yet (a container starting)
      const body = await res.json();
      expect({ status: res.status, y: body.y, resolved: body.resolved }, JSON.stringify(body)).toEqual({
        status: 200,
        y: [3, 7.5, -12],
        resolved: { esm: "esm", cjs: "cjs", metaResolve: "tiny-exports/lib/esm.js", requireResolve: "onnxruntime-node/dist/index.js" },
      });
      pids.add(body.pid);
      return pids.size === 2;
    },
    "both Scale replicas to answer",
  );
}

