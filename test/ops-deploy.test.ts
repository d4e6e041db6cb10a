/**
 * `serve-bin deploy` against a server started empty (`serve-bin start`, the
 * compiled binary), under a steady load that counts every response: the
 * same file twice changes nothing, a changed userConfig reconfigures in
 * place, a changed importPath is a rolling replace. Then `--state-dir`: a
 * PATCHed config survives a restart of the server.
 */
import { describe, expect, it } from "vitest";
import { copyFileSync, existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse as parseYAML } from "yaml";
import type { Subprocess } from "bun";
import type { StatusJSON } from "../src/runtime/control/status.ts";
import { alive, cliCommand, leftovers, runCli, startServer, tempDir, waitFor } from "./harness.ts";
import { startLoad, why, type Answer } from "./load.ts";

const FIXTURES = join(import.meta.dirname, "fixtures");
const parsed = (a: Answer) => JSON.parse(a.body) as { graph: string; weights: string; pid: number; consistent: boolean };

/** `serve-bin start` (no application) on free ports, as the compiled binary; ended by pid. */
async function startEmpty(cwd: string, args: string[] = []) {
  const proc: Subprocess<"ignore", "pipe", "pipe"> = Bun.spawn([...cliCommand(true), "start", "--port", "0", "--admin-port", "0", ...args], {
    cwd,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  let out = "";
  const pump = async (s: ReadableStream<Uint8Array>) => {
    const d = new TextDecoder();
    for await (const c of s) out += d.decode(c, { stream: true });
  };
  void pump(proc.stdout);
  void pump(proc.stderr);
  try {
    const m = await waitFor(() => {
      if (proc.exitCode !== null) throw new Error(`serve-bin start exited with ${proc.exitCode}:\n${out}`);
      return /listening on (http:\/\/\S+) \(admin API on (http:\/\/\S+)\)/.exec(out);
    }, "serve-bin start to listen");
    return {
      proc,
      url: m[1]!,
      adminUrl: m[2]!,
      output: () => out,
      [Symbol.asyncDispose]: async () => {
        if (proc.exitCode === null) proc.kill("SIGTERM");
        await proc.exited;
      },
    };
  } catch (e) {
    proc.kill("SIGKILL");
    await proc.exited;
    throw e;
  }
}

async function status(adminUrl: string): Promise<StatusJSON> {
  return (await (await fetch(`${adminUrl}/api/applications`)).json()) as StatusJSON;
}

const pidsOf = (s: StatusJSON, app: string, dep: string) => s.applications[app]!.deployments[dep]!.replicas.map((r) => r.pid).sort((a, b) => a - b);
const allPids = (s: StatusJSON) => Object.values(s.applications).flatMap((a) => Object.values(a.deployments).flatMap((d) => d.replicas.map((r) => r.pid))).sort((a, b) => a - b);
const words = (text: string) => text.trim().split("\n").map((l) => l.split(/\s+/).filter(Boolean));

const appYaml = (importPath: string, weights?: string, model = true) =>
  [
    "applications:",
    "  - name: shop",
    "    routePrefix: /m",
    `    importPath: ${importPath}`,
    ...(model ? ["    deployments:", "      - name: Model", "        numReplicas: 2"] : []),
    ...(weights ? [`        userConfig: { weights: ${weights} }`] : []),
    "",
  ].join("\n");

describe("serve-bin deploy of a changed config (compiled binary)", () => {
  it("changes nothing for the same file, reconfigures a changed userConfig in place, and rolls a changed importPath with zero failed requests", async () => {
    await using dir = tempDir("sb-ops-deploy-");
    copyFileSync(join(FIXTURES, "ops-model.ts"), join(dir.path, "graph.ts"));
    // The same model in a second file that answers graph "v2": a deploy that switches importPath to it is a rolling replace.
    const v1 = readFileSync(join(FIXTURES, "ops-model.ts"), "utf8");
    expect(v1).toContain('const GRAPH = "v1";');
    writeFileSync(join(dir.path, "graph-v2.ts"), v1.replace('const GRAPH = "v1";', 'const GRAPH = "v2";'));
    copyFileSync(join(FIXTURES, "ops-health.ts"), join(dir.path, "graph-sensor.ts"));
    const file = join(dir.path, "app.yaml");
    writeFileSync(file, appYaml("./graph.ts"));
    await using server = await startEmpty(dir.path);
    const address = ["--address", server.adminUrl];
    const deploy = () => runCli(["deploy", file, ...address], { compiled: true });

    const empty = await runCli(["status", ...address], { compiled: true });
    expect(empty).toEqual({ code: 0, stdout: "no applications yet; deploy one with serve-bin deploy <config.yaml>\n", stderr: "" });

    const first = await deploy();
    expect(first.stderr).toBe("");
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/shop\s+RUNNING\s+\/m\s+Model\s+HEALTHY\s+2\/2\s+0/);

    const load = startLoad({ url: `${server.url}/m`, body: { x: 1, sleepMs: 20 }, loops: 4 });
    await load.until((r) => r.ok >= 10, "the first answers");
    const before = await status(server.adminUrl);

    // The same file again: nothing is touched.
    const again = await deploy();
    expect(again.code).toBe(0);
    expect(allPids(await status(server.adminUrl))).toEqual(allPids(before));

    const table = await runCli(["status", ...address], { compiled: true });
    expect(table.code).toBe(0);
    expect(words(table.stdout)).toEqual([
      ["APPLICATION", "STATUS", "ROUTE", "DEPLOYMENT", "STATUS", "REPLICAS", "RESTARTS"],
      ["shop", "RUNNING", "/m", "Model", "HEALTHY", "2/2", "0"],
      ["DAGDriver", "HEALTHY", "1/1", "0"],
    ]);
    const json = await runCli(["status", "--json", ...address], { compiled: true });
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual(await status(server.adminUrl));

    const config = await runCli(["config", ...address], { compiled: true });
    expect(config.code).toBe(0);
    const applied = parseYAML(config.stdout) as { applications: unknown[] };
    const common = { maxQueuedRequests: -1, healthCheckPeriodS: 10, healthCheckTimeoutS: 30, gracefulShutdownTimeoutS: 20, env: {} };
    expect(applied.applications).toEqual([
      {
        name: "shop",
        routePrefix: "/m",
        importPath: join(dir.path, "graph.ts"),
        deployments: [
          { name: "Model", numReplicas: 2, maxOngoingRequests: 5, userConfig: { weights: "w1" }, ...common },
          { name: "DAGDriver", numReplicas: 1, maxOngoingRequests: 100, ...common, routePrefix: "/m" },
        ],
      },
    ]);

    // A changed userConfig: reconfigure() in place, same pids, new answer everywhere.
    writeFileSync(file, appYaml("./graph.ts", "w9"));
    const reconfigured = await deploy();
    expect(reconfigured.code).toBe(0);
    const reconfiguredAt = performance.now();
    expect(allPids(await status(server.adminUrl))).toEqual(allPids(before));
    const afterReconfigure = (r: { answers: Answer[] }) => r.answers.filter((a) => a.sentAt > reconfiguredAt && a.status === 200);
    await load.until((r) => new Set(afterReconfigure(r).map((a) => parsed(a).pid)).size === 2, "answers from both Model replicas after the reconfigure");
    expect(new Set(afterReconfigure(load.current).map((a) => parsed(a).weights))).toEqual(new Set(["w9"]));

    // A userConfig the model's reconfigure() refuses: the deploy fails with the user's error, nothing changes.
    writeFileSync(file, appYaml("./graph.ts", "bad"));
    const refusedAt = performance.now();
    const refused = await deploy();
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(
      /^serve-bin: deploy of .*app\.yaml failed: reconfigure\(\) of Model failed on replica Model#\d; the change was rolled back on every replica: weights "bad" cannot be loaded\n/,
    );
    expect(allPids(await status(server.adminUrl))).toEqual(allPids(before));
    expect((await status(server.adminUrl)).applications.shop!.message).toMatch(/^reconfigure of Model failed on replica Model#\d and was rolled back: weights "bad" cannot be loaded$/);
    const config2 = parseYAML((await runCli(["config", ...address], { compiled: true })).stdout) as { applications: { deployments: { name: string; userConfig?: unknown }[] }[] };
    expect(config2.applications[0]!.deployments.find((d) => d.name === "Model")!.userConfig).toEqual({ weights: "w9" });
    expect(load.current.answers.filter((a) => a.sentAt > refusedAt && a.status === 200 && parsed(a).weights !== "w9")).toEqual([]);

    // A changed importPath: every replica replaced, new ones before old ones stop.
    writeFileSync(file, appYaml("./graph-v2.ts", "w9"));
    const t0 = performance.now();
    const rolled = await deploy();
    const rollMs = performance.now() - t0;
    expect(rolled.stderr).toBe("");
    expect(rolled.code).toBe(0);
    expect(rolled.stdout).toMatch(/shop\s+RUNNING\s+\/m\s+Model\s+HEALTHY\s+2\/2/);
    const rolledAt = performance.now();
    const after = await waitFor(async () => {
      const s = await status(server.adminUrl);
      const d = Object.values(s.applications.shop!.deployments);
      return d.every((x) => x.replicas.length === x.targetReplicas && x.replicas.every((r) => r.state === "RUNNING")) ? s : null;
    }, "the old replicas to stop");
    expect(after.applications.shop!.message).toBe("");
    const newPids = allPids(after);
    expect(newPids.filter((p) => allPids(before).includes(p))).toEqual([]);
    await waitFor(() => allPids(before).every((p) => !alive(p)), "the old replicas to exit");
    const afterRoll = (r: { answers: Answer[] }) => r.answers.filter((a) => a.sentAt > rolledAt && a.status === 200);
    await load.until((r) => new Set(afterRoll(r).map((a) => parsed(a).pid)).size === 2, "answers from both new Model replicas");
    expect(new Set(afterRoll(load.current).map((a) => `${parsed(a).graph} ${parsed(a).weights}`))).toEqual(new Set(["v2 w9"]));
    expect(new Set(afterRoll(load.current).map((a) => parsed(a).pid))).toEqual(new Set(pidsOf(after, "shop", "Model")));
    expect(load.current.answers.map(parsed).filter((a) => a.graph && !a.consistent)).toEqual([]);

    // A graph without Model: Model keeps serving the old DAGDriver until it has gone, then goes too.
    writeFileSync(file, appYaml("./graph-sensor.ts", undefined, false));
    const swapped = await deploy();
    expect(swapped.code).toBe(0);
    const swappedAt = performance.now();
    const sensor = await waitFor(async () => {
      const s = await status(server.adminUrl);
      return Object.keys(s.applications.shop!.deployments).sort().join() === "DAGDriver,Sensor" ? s : null;
    }, "Model to be removed");
    await waitFor(() => newPids.every((p) => !alive(p)), "the v2 replicas to exit");
    await load.until((r) => r.answers.some((a) => a.sentAt > swappedAt && a.status === 200), "answers from the new graph");
    const result = await load.stop();

    console.log(`deploy: rolling replace of 3 replicas took ${rollMs.toFixed(0)} ms; ${result.failed} failed of ${result.ok + result.failed}`);
    expect(result.failed, why(result)).toBe(0);
    const sensorPids = pidsOf(sensor, "shop", "Sensor");
    expect(result.answers.filter((a) => a.sentAt > swappedAt).map((a) => JSON.parse(a.body))).toEqual(
      result.answers.filter((a) => a.sentAt > swappedAt).map(() => ({ pid: expect.toSatisfy((p: number) => sensorPids.includes(p)) })),
    );

    const down = await runCli(["shutdown", ...address], { compiled: true });
    expect(down).toEqual({ code: 0, stdout: `serve-bin at ${server.adminUrl} is shutting down…\nstopped\n`, stderr: "" });
    expect(await server.proc.exited).toBe(0);
    expect(leftovers(server.proc.pid)).toEqual([]);
  });
});

describe("--state-dir", () => {
  it("restores a PATCHed numReplicas and userConfig after the server restarts", async () => {
    await using dir = tempDir("sb-ops-state-");
    copyFileSync(join(FIXTURES, "ops-model.ts"), join(dir.path, "graph.ts"));
    const stateDir = join(dir.path, "state");
    const args = ["--state-dir", stateDir];
    const first = await startServer("graph.ts", { cwd: dir.path, args });
    try {
      const load = startLoad({ url: `${first.url}/m`, body: { x: 1, sleepMs: 10 }, loops: 3 });
      await load.until((r) => r.ok >= 5, "the first answers");
      const res = await fetch(`${first.adminUrl}/api/applications/default/deployments/Model`, {
        method: "PATCH",
        body: JSON.stringify({ numReplicas: 2, userConfig: { weights: "saved" } }),
        headers: { "content-type": "application/json" },
      });
      expect(res.status).toBe(200);
      const patchedAt = performance.now();
      await load.until((r) => new Set(r.answers.filter((a) => a.sentAt > patchedAt).map((a) => parsed(a).pid)).size === 2, "answers from both replicas");
      const result = await load.stop();
      expect(result.failed, why(result)).toBe(0);
      expect(existsSync(join(stateDir, "config.json"))).toBe(true);
      expect(readdirSync(stateDir)).toEqual(["config.json"]);
    } finally {
      expect(await first.stop()).toBe(0);
    }

    await using second = await startServer("graph.ts", { cwd: dir.path, args });
    expect(second.output()).toContain(`restoring the applied config from ${stateDir}`);
    const s = await status(second.adminUrl);
    expect(s.applications.default!.deployments.Model).toMatchObject({ status: "HEALTHY", targetReplicas: 2 });
    const load = startLoad({ url: `${second.url}/m`, body: { x: 2 }, loops: 2 });
    await load.until((r) => new Set(r.answers.map((a) => parsed(a).pid)).size === 2, "answers from both replicas");
    const result = await load.stop();
    expect(result.failed, why(result)).toBe(0);
    expect(new Set(result.answers.map((a) => parsed(a).weights))).toEqual(new Set(["saved"]));
    expect(new Set(result.answers.map((a) => parsed(a).pid))).toEqual(new Set(pidsOf(s, "default", "Model")));
    const config = (await (await fetch(`${second.adminUrl}/api/config`)).json()) as { applications: { deployments: { name: string; numReplicas: number; userConfig?: unknown }[] }[] };
    expect(config.applications[0]!.deployments.find((d) => d.name === "Model")).toMatchObject({ numReplicas: 2, userConfig: { weights: "saved" } });
  });
});
