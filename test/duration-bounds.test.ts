/**
 * Issue 17 item 5: a timer waits at most 2^31 − 1 ms; a longer one wraps and
 * fires at once (requestTimeoutS: 2147484 answered every request 504 in
 * 6 ms). Every duration is bounded at 2147483 s: the config file, PUT and
 * PATCH, the CLI, batch options and a handle's timeoutS all refuse more, and
 * say the bound.
 */
import { describe, expect, it } from "vitest";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { batch, deployment, InputNode, ServeError, type DeploymentHandle } from "serve-bin";
import { MAX_SECONDS } from "../src/config/schema.ts";
import { deploymentPatchSchema, parseConfig, validate } from "../src/config/index.ts";
import { EXAMPLES, ROOT, runCli, startServer, stopCleanly, tempDir } from "./harness.ts";

const OVER = MAX_SECONDS + 1; // 2147484 s: 2^31 ms and a little
const BOUND = /at most 2147483 \(about 24\.8 days, the longest a timer can wait\)/;

const app = (deployments: object[] = []) => ({ name: "a", importPath: "./graph.ts", deployments });
/** Every duration field of a config file, as a function that writes `v` into it. */
const FIELDS: [string, (v: number) => object][] = [
  ["proxy.requestTimeoutS", (v) => ({ proxy: { requestTimeoutS: v } })],
  ["proxy.shutdownTimeoutS", (v) => ({ proxy: { shutdownTimeoutS: v } })],
  ["proxy.bodyTimeoutS", (v) => ({ proxy: { bodyTimeoutS: v } })],
  ["applications[0].deployments[0].healthCheckPeriodS", (v) => ({ applications: [app([{ name: "M", healthCheckPeriodS: v }])] })],
  ["applications[0].deployments[0].healthCheckTimeoutS", (v) => ({ applications: [app([{ name: "M", healthCheckTimeoutS: v }])] })],
  ["applications[0].deployments[0].gracefulShutdownTimeoutS", (v) => ({ applications: [app([{ name: "M", gracefulShutdownTimeoutS: v }])] })],
  ["applications[0].deployments[0].autoscalingConfig.upscaleDelayS", (v) => ({ applications: [app([{ name: "M", autoscalingConfig: { upscaleDelayS: v } }])] })],
  ["applications[0].deployments[0].autoscalingConfig.downscaleDelayS", (v) => ({ applications: [app([{ name: "M", autoscalingConfig: { downscaleDelayS: v } }])] })],
];

describe("every duration is bounded by what a timer can wait", () => {
  it.each(FIELDS)("%s: 2147483 is accepted, 2147484 refused with the bound", (path, write) => {
    expect(parseConfig(write(MAX_SECONDS)).ok).toBe(true);
    const r = parseConfig(write(OVER));
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.issues.map((i) => i.path.map((p) => (typeof p === "number" ? `[${p}]` : `.${p}`)).join("").slice(1).replace(/\.\[/g, "["))).toEqual([path]);
    expect(r.issues[0]!.message).toMatch(BOUND);
  });

  it("batchWaitTimeoutS and a deployment's options refuse 2147484 where they are written", () => {
    expect(() => batch(async (xs: number[]) => xs, { batchWaitTimeoutS: OVER })).toThrow(BOUND);
    expect(() => batch(async (xs: number[]) => xs, { batchWaitTimeoutS: MAX_SECONDS })).not.toThrow();
    expect(() => deployment(function f() {}, { gracefulShutdownTimeoutS: OVER })).toThrow(BOUND);
    expect(validate(deploymentPatchSchema(), { healthCheckTimeoutS: OVER }).ok).toBe(false);
  });

  it("a handle's timeoutS past the bound (or not a positive number) is refused; the bound itself works", async () => {
    const Double = deployment(function Double(x = 0) {
      return 2 * x;
    });
    const Caller = deployment(
      class Caller {
        constructor(readonly h: DeploymentHandle) {}
        async run(t: number) {
          try {
            return await this.h.options({ timeoutS: t }).remote(21);
          } catch (e) {
            return e instanceof ServeError ? `${e.code}: ${e.message}` : String(e);
          }
        }
      },
    );
    const dag = Caller.bind(Double.bind()).run.bind(new InputNode());
    expect(await dag.execute(MAX_SECONDS)).toBe(42);
    expect(await dag.execute(OVER)).toMatch(/^build: handle\.options\(\{ timeoutS: 2147484 \}\) for Double: .*at most 2147483/);
    expect(await dag.execute(0)).toMatch(/^build: .*> 0/);
  });
});

describe("over HTTP and on the command line", () => {
  it("PUT and PATCH answer 422 naming the bound, the CLI exits 2, and requestTimeoutS at the bound does not fire at once", async () => {
    await using dir = tempDir();
    const config = join(dir.path, "app.yaml");
    writeFileSync(config, `proxy:\n  requestTimeoutS: ${MAX_SECONDS}\napplications:\n  - name: default\n    importPath: ${join(EXAMPLES, "diamond/graph.ts")}\n`);
    const server = await startServer(config, { args: ["--app-dir", ROOT] });
    try {
      // Before the bound, 2147484 s made every request 504 at once; at the bound the answer comes.
      const answer = await fetch(`${server.url}/`, { method: "POST", body: "[1,2,3]", headers: { "content-type": "application/json" } });
      expect(answer.status).toBe(200);

      const json = { "content-type": "application/json" };
      const put = await fetch(`${server.adminUrl}/api/applications`, {
        method: "PUT",
        headers: json,
        body: JSON.stringify({ proxy: { requestTimeoutS: OVER }, applications: [{ name: "default", importPath: join(EXAMPLES, "diamond/graph.ts") }] }),
      });
      expect(put.status).toBe(422);
      expect(await put.json()).toMatchObject({ error: "invalid", issues: [{ path: ["proxy", "requestTimeoutS"], message: expect.stringMatching(BOUND) }] });

      const patch = await fetch(`${server.adminUrl}/api/applications/default/deployments/Model`, { method: "PATCH", headers: json, body: JSON.stringify({ gracefulShutdownTimeoutS: OVER }) });
      expect(patch.status).toBe(422);
      expect(await patch.json()).toMatchObject({ error: "invalid", issues: [{ path: ["gracefulShutdownTimeoutS"], message: expect.stringMatching(BOUND) }] });
    } finally {
      await stopCleanly(server);
    }

    const over = join(dir.path, "over.yaml");
    writeFileSync(over, `proxy:\n  shutdownTimeoutS: ${OVER}\napplications:\n  - name: default\n    importPath: ${join(EXAMPLES, "diamond/graph.ts")}\n`);
    const r = await runCli(["run", over, "--port", "0", "--admin-port", "0", "--app-dir", ROOT]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/proxy\.shutdownTimeoutS: expected a number of seconds ≥ 0 and at most 2147483/);
  });
});
