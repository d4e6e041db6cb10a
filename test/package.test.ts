/**
 * The npm package as an app gets it: `npm pack`, installed offline from the
 * tarball into an app directory of its own (under the name `serve-bin`, as
 * the README says), then `npx serve-bin --help` and `build`, a graph served
 * through the package's bin with no Bun on PATH, and `tsc --noEmit` of a
 * graph against the shipped declarations with no DOM lib.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT, postJSON, startServer, stopCleanly, tempDir, type TempDir } from "./harness.ts";

/** The real Node (under `bun --bun`, PATH starts with a directory whose "node" is Bun). */
const NODE = spawnSync("sh", ["-c", "which -a node"], { encoding: "utf8" })
  .stdout.split("\n")
  .find((p) => p && !p.includes("/bun-node-"))!;
/** Node and npm, and nothing that holds a Bun: the package must bring its own. */
const PATH = `${dirname(NODE)}:/usr/bin:/bin`;

function sh(cmd: string[], cwd: string, timeout = 300_000) {
  const r = spawnSync(cmd[0]!, cmd.slice(1), { cwd, encoding: "utf8", timeout, env: { ...process.env, PATH, npm_config_update_notifier: "false" } });
  return { code: r.status, stdout: r.stdout, out: `${r.stdout}${r.stderr}${r.error ? String(r.error) : ""}` };
}

const GRAPH = `import { DAGDriver, HttpError, InputNode, batch, deployment, jsonRequest, serve, type DeploymentHandle } from "serve-bin";

class Model {
  constructor(private weight: number) {}
  forward(x: number): string {
    if (x < 0) throw new HttpError(422, "x must be ≥ 0", { x });
    return \`\${this.weight * x}\`;
  }
}

class Vec {
  @batch({ maxBatchSize: 4 })
  async twice(xs: number[]): Promise<number[]> {
    return xs.map((x) => x * 2);
  }
}

const Caller = deployment(class Caller {
  constructor(private m: DeploymentHandle<Model>) {}
  async run(x: number): Promise<string> {
    const s: string = await this.m.forward.remote(x);
    return s;
  }
});

const input = new InputNode();
const doubled = deployment(Vec).bind().twice.bind(input);
export default DAGDriver.bind(Caller.bind(deployment(Model).bind(3)).run.bind(doubled), { httpAdapter: jsonRequest });

export const direct = Caller.bind(deployment(Model).bind(7)).run.bind(input);

export async function programmatic(): Promise<{ viaHandle: unknown; viaHttp: string }> {
  const h = await serve.run(direct, { port: 0 });
  try {
    const viaHandle = await h.predict.remote(2);
    const viaHttp = await (await fetch(serve.url(), { method: "POST", body: "3" })).text();
    return { viaHandle, viaHttp };
  } finally {
    await serve.shutdown();
  }
}
`;

/** A mistake the shipped types must catch: forward returns a string. */
const BAD = `import { deployment, type DeploymentHandle } from "serve-bin";
class Model { forward(x: number): string { return String(x); } }
export const C = deployment(class C {
  constructor(private m: DeploymentHandle<Model>) {}
  async run(): Promise<number> { const n: number = await this.m.forward.remote(1); return n; }
});
`;

/** An app's tsconfig: no DOM lib, no Bun types named. `skipLibCheck: false` checks the shipped declarations themselves too. */
const tsconfig = (files: string[], skipLibCheck: boolean) =>
  JSON.stringify({
    compilerOptions: { target: "ESNext", module: "ESNext", moduleResolution: "bundler", lib: ["ESNext"], strict: true, noEmit: true, skipLibCheck },
    files,
  });

describe("package-lock.json", () => {
  it("is what npm install writes for package.json, so a fresh clone stays clean", async () => {
    await using d = tempDir("sb-lock-");
    for (const f of ["package.json", "package-lock.json"]) writeFileSync(join(d.path, f), readFileSync(join(ROOT, f)));
    const r = sh(["npm", "install", "--package-lock-only", "--offline", "--ignore-scripts", "--no-audit", "--no-fund"], d.path);
    if (r.code !== 0 && /ENOTCACHED/.test(r.out)) return void console.warn(`\n*** package-lock check SKIPPED: npm's cache lacks what it needs: ${r.out.trim().split("\n")[0]} ***\n`);
    expect(r.code, r.out).toEqual(0);
    expect(readFileSync(join(d.path, "package-lock.json"), "utf8")).toEqual(readFileSync(join(ROOT, "package-lock.json"), "utf8"));
  });
});

describe("the npm package, installed from its tarball into an app", () => {
  let dir: TempDir;
  let app = "";
  let skipped = "";
  let tarball = "";

  beforeAll(() => {
    dir = tempDir("sb-pkg-");
    const pack = sh(["npm", "pack", "--pack-destination", dir.path], ROOT);
    expect(pack.code, pack.out).toEqual(0);
    tarball = join(dir.path, pack.stdout.trim().split("\n").pop()!.trim());
    expect(existsSync(tarball), pack.out).toBe(true);

    app = join(dir.path, "app");
    sh(["mkdir", "-p", app], dir.path);
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "my-app", private: true, type: "module", dependencies: { "serve-bin": `file:${tarball}` } }));
    writeFileSync(join(app, "graph.ts"), GRAPH);
    writeFileSync(join(app, "bad.ts"), BAD);
    // serve-bin from the tarball only; its dependencies from npm's cache where it has them, else the registry.
    const install = sh(["npm", "install", "--prefer-offline", "--no-audit", "--no-fund"], app);
    if (install.code !== 0 && /ENOTFOUND|EAI_AGAIN|ETIMEDOUT|ECONNREFUSED|ENOTCACHED|ENETUNREACH/.test(install.out)) {
      skipped = `npm install of the tarball's dependencies needs the npm registry or a warm npm cache: ${install.out.trim().split("\n").slice(0, 2).join(" | ")}`;
      console.warn(`\n*** test/package.test.ts SKIPPED: ${skipped} ***\n`);
      return;
    }
    expect(install.code, install.out).toEqual(0);
  }, 600_000);

  afterAll(() => dir?.[Symbol.asyncDispose]());

  it("installs as serve-bin with a bin and declarations, and leaves the package's own name to package.json", () => {
    if (skipped) return;
    const pkg = JSON.parse(readFileSync(join(app, "node_modules/serve-bin/package.json"), "utf8"));
    expect({ name: pkg.name, bin: pkg.bin, types: pkg.types }).toEqual({ name: "@serve-bin/serve-bin", bin: { "serve-bin": "bin/serve-bin" }, types: "./types/index.d.ts" });
    expect(existsSync(join(app, "node_modules/serve-bin/types/index.d.ts"))).toBe(true);
    expect(sh(["sh", "-c", "command -v bun || echo none"], app).out.trim()).toEqual("none");
  });

  it("installs with --offline into another app once npm's cache holds the dependencies (as the README says)", () => {
    if (skipped) return;
    const app2 = join(dir.path, "app2");
    sh(["mkdir", "-p", app2], dir.path);
    writeFileSync(join(app2, "package.json"), JSON.stringify({ name: "my-other-app", private: true }));
    const install = sh(["npm", "install", "--offline", "--no-audit", "--no-fund", `serve-bin@file:${tarball}`], app2);
    expect(install.code, install.out).toEqual(0);
    expect(JSON.parse(readFileSync(join(app2, "node_modules/serve-bin/package.json"), "utf8")).name).toEqual("@serve-bin/serve-bin");
    const help = sh(["npx", "--offline", "serve-bin", "--version"], app2);
    expect({ code: help.code, out: help.stdout }).toEqual({ code: 0, out: "serve-bin 0.1.0\n" });
  }, 300_000);

  it("runs `npx serve-bin --help` and `npx serve-bin build graph.ts` on the Bun it installed", () => {
    if (skipped) return;
    const help = sh(["npx", "--offline", "serve-bin", "--help"], app);
    expect(help.code, help.out).toEqual(0);
    expect(help.stdout).toMatch(/^serve-bin — inference graphs for TypeScript/);
    const build = sh(["npx", "--offline", "serve-bin", "build", "graph.ts"], app);
    expect(build.code, build.out).toEqual(0);
    for (const name of ["Model", "Vec", "Caller", "DAGDriver"]) expect(build.out).toContain(`name: ${name}\n`);
  });

  it("serves the graph through the package's bin: replicas run, answers are right, SIGTERM stops everything", async () => {
    if (skipped) return;
    const server = await startServer("graph.ts", { command: [join(app, "node_modules/.bin/serve-bin")], cwd: app, env: { PATH } });
    try {
      const ok = await postJSON(server.url, 5);
      expect({ status: ok.status, body: await ok.text() }).toEqual({ status: 200, body: "30" });
      const bad = await postJSON(server.url, -1);
      expect({ status: bad.status, body: await bad.json() }).toEqual({ status: 422, body: { error: "invalid", message: "x must be ≥ 0", deployment: "Model", x: -2 } });
    } finally {
      await stopCleanly(server);
    }
  });

  it("runs serve.run from an app's own script on the installed package (bun run)", () => {
    if (skipped) return;
    writeFileSync(join(app, "main.ts"), 'import { programmatic } from "./graph.ts";\nconsole.log(JSON.stringify(await programmatic()));\n');
    const bun = join(app, "node_modules/bun/bin/bun.exe");
    const r = sh([bun, "main.ts"], app, 120_000);
    expect(r.code, r.out).toEqual(0);
    expect(JSON.parse(r.stdout.trim().split("\n").pop()!)).toEqual({ viaHandle: "14", viaHttp: "21" });
  }, 180_000);

  it("type-checks a graph against the shipped declarations with lib ESNext only, and catches a wrong type", () => {
    if (skipped) return;
    writeFileSync(join(app, "tsconfig.json"), tsconfig(["graph.ts"], false));
    const good = sh([join(ROOT, "node_modules/.bin/tsc"), "-p", "tsconfig.json"], app);
    expect(good.code, good.out).toEqual(0);
    writeFileSync(join(app, "tsconfig.bad.json"), tsconfig(["bad.ts"], true));
    const bad = sh([join(ROOT, "node_modules/.bin/tsc"), "-p", "tsconfig.bad.json"], app);
    expect(bad.code).not.toEqual(0);
    expect(bad.out).toMatch(/bad\.ts\(5,\d+\): error TS2322: Type 'string' is not assignable to type 'number'/);
  }, 300_000);
});
