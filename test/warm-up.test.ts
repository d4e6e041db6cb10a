/**
 * `warmUp()`: runs after the constructor and reconfigure(), before the replica
 * counts as ready; no call reaches a replica while it warms up, and a warmUp()
 * that throws is a failed start with the user's error.
 */
import { describe, expect, it } from "vitest";
import { existsSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DAGDriver, deployment, InputNode } from "serve-bin";
import type { StatusJSON } from "../src/runtime/control/status.ts";
import { postJSON, startServer, stopCleanly, tempDir, waitFor, type RunningServer } from "./harness.ts";

const FIXTURE = join(import.meta.dirname, "fixtures/warm-up.ts");

interface Answer {
  pid: number;
  warm: boolean;
  callsBeforeWarm: number;
  calls: number;
}

async function model(server: RunningServer) {
  return ((await (await fetch(`${server.adminUrl}/api/applications`)).json()) as StatusJSON).applications.default!.deployments.Model!;
}

async function patch(server: RunningServer, body: unknown): Promise<number> {
  const res = await fetch(`${server.adminUrl}/api/applications/default/deployments/Model?wait=false`, {
    method: "PATCH",
    body: JSON.stringify(body),
    headers: { "content-type": "application/json" },
  });
  return res.status;
}

async function ask(server: RunningServer): Promise<Answer> {
  const res = await postJSON(server.url, {});
  expect(res.status).toBe(200);
  return (await res.json()) as Answer;
}

describe("warmUp()", () => {
  it("holds a new replica out of traffic until it ends: it is STARTING meanwhile and sees no call before", async () => {
    await using marks = tempDir("sb-warm-");
    writeFileSync(join(marks.path, "go"), ""); // the first replica warms up at once
    const server = await startServer(FIXTURE, { env: { SB_MARKS: marks.path } });
    try {
      const first = await ask(server);
      expect(first).toEqual({ pid: first.pid, warm: true, callsBeforeWarm: 0, calls: 1 });

      // The second replica waits in warmUp() until "go" exists again.
      rmSync(join(marks.path, "go"));
      expect(await patch(server, { numReplicas: 2 })).toBe(202);
      const warming = await waitFor(() => readdirSync(marks.path).find((n) => n.startsWith("warming-") && n !== `warming-${first.pid}`), "the new replica to be in warmUp()");
      const newPid = Number(warming.slice("warming-".length));

      // While it warms up: STARTING, and every one of 40 requests goes to the first replica.
      const during: Answer[] = [];
      for (let i = 0; i < 40; i++) during.push(await ask(server));
      expect(new Set(during.map((a) => a.pid))).toEqual(new Set([first.pid]));
      const d = await model(server);
      expect(d.replicas.find((r) => r.pid === newPid)?.state).toBe("STARTING");
      expect(d.status).not.toBe("HEALTHY");

      writeFileSync(join(marks.path, "go"), "");
      await waitFor(async () => (await model(server)).status === "HEALTHY", "both replicas to run");
      const fromNew = await waitFor(async () => {
        const a = await ask(server);
        return a.pid === newPid && a;
      }, "an answer from the warmed-up replica");
      expect(fromNew).toMatchObject({ pid: newPid, warm: true, callsBeforeWarm: 0 });
    } finally {
      await stopCleanly(server);
    }
  });

  it("that throws is a failed start with the user's error, and the replicas already running keep serving", async () => {
    await using marks = tempDir("sb-warm-");
    writeFileSync(join(marks.path, "go"), "");
    const server = await startServer(FIXTURE, { env: { SB_MARKS: marks.path } });
    try {
      const before = await ask(server);
      expect(await patch(server, { env: { SB_MARKS: marks.path, SB_WARM_FAIL: "1" } })).toBe(202);
      const message = await waitFor(async () => {
        const m = (await model(server)).message;
        return m.includes("warm-up of") && m;
      }, "the status to carry warmUp()'s error");
      expect(message).toMatch(/warm-up of \d+ failed: the model gave NaN/);
      expect(message).toContain("before it was ready");
      for (let i = 0; i < 5; i++) expect((await ask(server)).pid).toBe(before.pid);
      expect(existsSync(join(marks.path, `warming-${before.pid}`))).toBe(true);
    } finally {
      await stopCleanly(server);
    }
  });
});

describe("warmUp() in dag.execute()", () => {
  it("runs once, after reconfigure(), before the first call, as served", async () => {
    const Model = deployment(
      class Model {
        steps: string[] = ["constructor"];
        reconfigure(cfg: { w: number }) {
          this.steps.push(`reconfigure ${cfg.w}`);
        }
        warmUp() {
          this.steps.push("warmUp");
        }
        predict(x: number) {
          this.steps.push(`predict ${x}`);
          return [...this.steps];
        }
      },
      { userConfig: { w: 2 } },
    );
    const dag = DAGDriver.bind(Model.bind().predict.bind(new InputNode()));
    expect(await dag.execute(1)).toEqual(["constructor", "reconfigure 2", "warmUp", "predict 1"]);
    expect(await dag.execute(2)).toEqual(["constructor", "reconfigure 2", "warmUp", "predict 1", "predict 2"]);
  });

  it("that throws fails the call with the user's error", async () => {
    const Model = deployment(
      class Broken {
        warmUp() {
          throw new RangeError("the model gave NaN");
        }
        predict(x: number) {
          return x;
        }
      },
    );
    const dag = DAGDriver.bind(Model.bind().predict.bind(new InputNode()));
    await expect(dag.execute(1)).rejects.toMatchObject({ code: "user", message: "the model gave NaN", deployment: "Broken" });
  });
});
