/**
 * Invalid input is refused whole, with every problem's path and reason, and
 * nothing running changes; `build` writes every field's effective value;
 * `schema` documents the file; usage mistakes exit 2 with what to fix.
 */
import { describe, expect, it } from "vitest";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse as parseYAML } from "yaml";
import { parseYAML as parseConfigFile } from "../src/config/yaml.ts";
import type { StatusJSON } from "../src/runtime/control/status.ts";
import { EXAMPLES, runCli, startServer, tempDir } from "./harness.ts";
import { startLoad, why } from "./load.ts";

const FIXTURES = join(import.meta.dirname, "fixtures");

describe("invalid input is refused whole, and nothing running changes", () => {
  it("serve-bin run exits 2 on a config file with two problems, printing both paths", async () => {
    await using dir = tempDir("sb-cli-");
    writeFileSync(join(dir.path, "bad.yaml"), "applications:\n  - name: shop\n    importPath: ./graph.py\n    deployments:\n      - name: Model\n        numReplicas: -3\n");
    const r = await runCli(["run", "bad.yaml", "--port", "0", "--admin-port", "0"], { cwd: dir.path });
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr.split("\n")).toEqual([
      "serve-bin: bad.yaml is not a valid config:",
      expect.stringMatching(/^applications\[0\]\.importPath: expected "<file>\.ts" or "<file>\.js".* \(bad\.yaml:3:17\)$/),
      expect.stringMatching(/^applications\[0\]\.deployments\[0\]\.numReplicas: expected a whole number ≥ 0.* \(bad\.yaml:6:22\)$/),
      "",
    ]);
  });

  it("the admin API answers 422 with the issues to an invalid PUT, PATCH or importPath outside --app-dir, under load, with no request failed", async () => {
    await using dir = tempDir("sb-cli-");
    const app = join(dir.path, "app");
    mkdirSync(app);
    copyFileSync(join(FIXTURES, "ops-model.ts"), join(app, "graph.ts"));
    copyFileSync(join(FIXTURES, "ops-model.ts"), join(dir.path, "outside.ts"));
    writeFileSync(join(app, "app.yaml"), "applications:\n  - name: shop\n    routePrefix: /m\n    importPath: ./graph.ts\n");
    await using server = await startServer("app/app.yaml", { cwd: dir.path, args: ["--app-dir", app] });
    const admin = (path: string, method: string, body: unknown) =>
      fetch(`${server.adminUrl}${path}`, { method, body: JSON.stringify(body), headers: { "content-type": "application/json" } });
    const snapshot = async () => ({
      status: (await (await fetch(`${server.adminUrl}/api/applications`)).json()) as StatusJSON,
      config: (await (await fetch(`${server.adminUrl}/api/config`)).json()) as unknown,
    });
    const before = await snapshot();
    const load = startLoad({ url: `${server.url}/m`, body: { x: 1 }, loops: 2, pauseMs: 5 });
    await load.until((r) => r.ok >= 5, "the first answers");

    const put = await admin("/api/applications", "PUT", {
      applications: [{ name: "shop", importPath: "./graph.ts", deployments: [{ name: "Model", numReplicas: -1, maxOngoingRequests: "many" }] }],
    });
    expect(put.status).toBe(422);
    const putBody = (await put.json()) as { error: string; message: string; issues: { path: unknown[]; message: string }[] };
    expect(putBody.error).toBe("invalid");
    expect(putBody.message).toMatch(/^the config is invalid; nothing was changed:\n/);
    expect(putBody.issues.map((i) => i.path)).toEqual([
      ["applications", 0, "deployments", 0, "numReplicas"],
      ["applications", 0, "deployments", 0, "maxOngoingRequests"],
    ]);

    const patch = await admin("/api/applications/shop/deployments/Model", "PATCH", { numReplicas: "many" });
    expect(patch.status).toBe(422);
    expect(await patch.json()).toEqual({
      error: "invalid",
      message: expect.stringMatching(/^the patch is invalid; nothing was changed:\nnumReplicas: /),
      issues: [{ path: ["numReplicas"], message: expect.stringContaining('expected a whole number ≥ 0, or "auto"') }],
    });
    const auto = await admin("/api/applications/shop/deployments/Model", "PATCH", { numReplicas: "auto" });
    expect(auto.status).toBe(422);
    expect(await auto.json()).toMatchObject({ error: "invalid", issues: [{ path: ["numReplicas"], message: expect.stringContaining('numReplicas "auto" needs an autoscalingConfig') }] });

    const outside = await admin("/api/applications", "PUT", { applications: [{ name: "shop", routePrefix: "/m", importPath: join(dir.path, "outside.ts") }] });
    expect(outside.status).toBe(422);
    expect(await outside.json()).toEqual({
      error: "invalid",
      message: `importPath ${join(dir.path, "outside.ts")} points outside the app directory ${app}; move the graph under it or start the server with --app-dir`,
      issues: [{ path: ["applications", 0, "importPath"], message: `outside --app-dir ${app}` }],
    });

    const unknown = await admin("/api/applications", "PUT", { applications: [{ name: "shop", routePrefix: "/m", importPath: "./graph.ts", deployments: [{ name: "Nope", numReplicas: 2 }] }] });
    expect(unknown.status).toBe(422);
    expect(((await unknown.json()) as { issues: unknown[] }).issues).toEqual([
      { path: ["applications", 0, "deployments", 0, "name"], message: 'no deployment "Nope" in the graph' },
    ]);

    const result = await load.stop();
    expect(result.failed, why(result)).toBe(0);
    expect(await snapshot()).toEqual(before);
  });
});

describe("serve-bin build", () => {
  it("writes every deployment of the tutorial graph with every field's effective value", async () => {
    await using dir = tempDir("sb-cli-");
    const out = join(dir.path, "app.yaml");
    const r = await runCli(["build", join(EXAMPLES, "tutorial/graph.ts"), "-o", out]);
    expect(r).toEqual({ code: 0, stdout: "", stderr: `serve-bin: wrote ${out} (1 application)\n` });
    const config = parseYAML(readFileSync(out, "utf8")) as { applications: { deployments: unknown[] }[] };
    const d = (name: string, numReplicas: number, maxOngoingRequests: number, extra = {}) => ({
      name,
      numReplicas,
      maxOngoingRequests,
      maxQueuedRequests: -1,
      healthCheckPeriodS: 10,
      healthCheckTimeoutS: 30,
      gracefulShutdownTimeoutS: 20,
      env: {},
      ...extra,
    });
    expect(config).toEqual({
      proxy: { host: "0.0.0.0", port: 8000, requestTimeoutS: 60, maxBodyBytes: 104857600, errorDetail: "full", shutdownTimeoutS: 8, bodyTimeoutS: 60, maxConnections: 4096 },
      admin: { host: "127.0.0.1", port: 8265 },
      sharedMemory: expect.objectContaining({ enabled: expect.any(Boolean), thresholdBytes: expect.any(Number), arenaBytes: expect.any(Number) }),
      limits: { maxReplicasPerDeployment: 64, maxReplicas: 128, maxConcurrentStarts: 8, restartBackoffS: 1, restartBackoffMaxS: 300, restartResetAfterS: 600, maxConstructorRetries: 10, maxReplicaMemoryBytes: 8589934592, planTimeoutS: 60 },
      logging: { format: "text", level: "info" },
      tracing: { sampleRatio: 1 },
      applications: [
        {
          name: "default",
          routePrefix: "/my-dag",
          importPath: expect.stringMatching(/examples\/tutorial\/graph\.ts$/),
          deployments: [
            d("Model", 1, 5),
            d("Model_1", 1, 5),
            d("Combiner", 1, 5),
            d("preprocessor", 1, 5),
            d("avgPreprocessor", 1, 5),
            d("DAGDriver", 2, 100, { routePrefix: "/my-dag" }),
          ],
        },
      ],
    });
    // The file is valid as written.
    expect(parseConfigFile(readFileSync(out, "utf8"), "app.yaml")).toMatchObject({ ok: true });
  });

  it("names several applications by export or by file stem, and exits 2 on a clash", async () => {
    await using dir = tempDir("sb-cli-");
    copyFileSync(join(EXAMPLES, "tutorial/graph.ts"), join(dir.path, "tutorial.ts"));
    copyFileSync(join(EXAMPLES, "diamond/graph.ts"), join(dir.path, "diamond.ts"));
    const r = await runCli(["build", "tutorial.ts:dag", "diamond.ts"], { cwd: dir.path });
    expect(r.code).toBe(0);
    // Neither graph sets a routePrefix: written anyway, with what to fix before running it.
    expect(r.stderr).toBe("serve-bin: warning: applications dag and diamond both serve /; give each its own routePrefix in the file before running it\n");
    const config = parseYAML(r.stdout) as { applications: { name: string; importPath: string; deployments: { name: string }[] }[] };
    expect(config.applications.map((a) => [a.name, a.importPath])).toEqual([
      ["dag", "./tutorial.ts:dag"],
      ["diamond", "./diamond.ts"],
    ]);
    expect(config.applications[1]!.deployments.map((d) => d.name)).toEqual(["Model", "Model_1", "ensemble", "DAGDriver"]);

    mkdirSync(join(dir.path, "other"));
    copyFileSync(join(EXAMPLES, "diamond/graph.ts"), join(dir.path, "other/diamond.ts"));
    const clash = await runCli(["build", "diamond.ts", "other/diamond.ts"], { cwd: dir.path });
    expect(clash).toEqual({
      code: 2,
      stdout: "",
      stderr: 'serve-bin: diamond.ts and other/diamond.ts would both be named "diamond"; export the graphs under different names (graph.ts:name)\n',
    });
  });

  it("runs the compiled binary's build the same way", async () => {
    await using dir = tempDir("sb-cli-");
    copyFileSync(join(EXAMPLES, "diamond/graph.ts"), join(dir.path, "graph.ts"));
    const compiled = await runCli(["build", "graph.ts"], { cwd: dir.path, compiled: true });
    const source = await runCli(["build", "graph.ts"], { cwd: dir.path });
    expect(compiled.code).toBe(0);
    expect(compiled.stdout).toBe(source.stdout);
  });
});

describe("serve-bin schema", () => {
  it("prints a JSON Schema in which every property has a description", async () => {
    const r = await runCli(["schema"]);
    expect(r.code).toBe(0);
    const schema = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(schema).toMatchObject({ $schema: expect.stringContaining("json-schema.org"), title: "serve-bin config", type: "object" });
    const undocumented: string[] = [];
    const walk = (node: unknown, path: string) => {
      if (typeof node !== "object" || node === null) return;
      const n = node as Record<string, unknown>;
      for (const [k, v] of Object.entries((n.properties as Record<string, Record<string, unknown>>) ?? {})) {
        if (typeof v.description !== "string" || v.description.length < 10) undocumented.push(`${path}.${k}`);
        walk(v, `${path}.${k}`);
      }
      for (const k of ["items", "additionalProperties"]) walk(n[k], `${path}[]`);
      for (const k of ["anyOf", "oneOf", "allOf"]) for (const v of (n[k] as unknown[]) ?? []) walk(v, path);
    };
    walk(schema, "");
    expect(undocumented).toEqual([]);
    const deployment = ((schema.properties as any).applications.items.properties.deployments.items.properties) as Record<string, unknown>;
    expect(Object.keys(deployment)).toEqual(expect.arrayContaining(["name", "numReplicas", "maxOngoingRequests", "userConfig", "autoscalingConfig", "healthCheckPeriodS"]));
  });
});

describe("usage mistakes exit 2 with what to fix", () => {
  it.each([
    [["frobnicate"], /^serve-bin: unknown command "frobnicate"\n/],
    [["run"], /^serve-bin: run takes one graph module or config file\nusage: serve-bin run /],
    [["build"], /^serve-bin: build takes at least one graph module\nusage: serve-bin build /],
    [["deploy"], /^serve-bin: deploy takes one config file\nusage: serve-bin deploy /],
    [["run", "missing.ts"], /^serve-bin: no file at missing\.ts; give a graph module \(graph\.ts\[:export\]\) or a config file \(app\.yaml\)\n$/],
    [["run", "examples/diamond/graph.ts", "--port", "http"], /^serve-bin: --port takes a port number from 0 to 65535 \(0 picks a free one\), not "http"\n$/],
    [["run", "examples/diamond/graph.ts", "--port", "70000"], /^serve-bin: --port takes a port number from 0 to 65535/],
    [["run", "examples/diamond/graph.ts", "--bogus"], /^serve-bin: Unknown option '--bogus'.*\nusage: serve-bin run /s],
    [["status", "--address", "localhost:8265"], /^serve-bin: --address takes a URL like http:\/\/127\.0\.0\.1:8265, not "localhost:8265"\n$/],
  ])("serve-bin %j", async (args, message) => {
    const r = await runCli(args);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toMatch(message);
  });
});
