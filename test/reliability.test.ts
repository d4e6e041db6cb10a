/**
 * A caller's defences against bad replicas: outlier ejection (a replica that
 * keeps timing out stops getting that caller's traffic for a while, then comes
 * back) and retries of idempotent calls whose replica died mid-call.
 */
import { describe, expect, it } from "vitest";
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { deployment, DAGDriver, InputNode, type DeploymentHandle } from "serve-bin";
import { deploymentOptionsSchema } from "../src/config/schema.ts";
import { ServeError } from "../src/error.ts";
import { countsAgainstReplica, OutlierDetector, type OutlierState } from "../src/runtime/outlier.ts";
import { postJSON, startServer, stopCleanly, tempDir, waitFor } from "./harness.ts";

const FIXTURES = join(import.meta.dirname, "fixtures");

interface Sent {
  status: number;
  pid?: number;
  sentAt: number;
  doneAt: number;
  /** What the server had printed when the request was sent and when it was answered. */
  ejectedBefore: boolean;
  backBefore: boolean;
  backAtDone: boolean;
}

describe("outlier ejection, served", () => {
  it("ejects the replica that keeps timing out: its caller sends everything to the healthy one, and it comes back after its time", async () => {
    await using marks = tempDir("sb-outlier-");
    writeFileSync(join(marks.path, "bad"), "");
    const server = await startServer(join(FIXTURES, "outlier.ts"), { env: { SB_MARKS: marks.path } });
    try {
      const badPid = Number((await waitFor(() => readdirSync(marks.path).find((n) => n.startsWith("bad-")), "a replica to claim the bad role")).slice(4));
      const ejected = () => /ejected replica Model#\d of Model for 2 s after 3 timeouts or 503s in a row/.test(server.output());
      const back = () => /replica Model#\d of Model is back after its ejection/.test(server.output());
      const sent: Sent[] = [];
      const send = async () => {
        const s = { sentAt: performance.now(), ejectedBefore: ejected(), backBefore: back() };
        const res = await postJSON(server.url, {});
        const body = (await res.json()) as { pid?: number };
        const one = { ...s, status: res.status, pid: body.pid, doneAt: performance.now(), backAtDone: back() };
        sent.push(one);
        return one;
      };

      writeFileSync(join(marks.path, "hang"), "");
      await waitFor(async () => (await send(), ejected()), "the hanging replica to be ejected");
      const timeouts = sent.filter((s) => s.status === 504);
      expect(timeouts.length).toBeGreaterThanOrEqual(3);
      const lastTimeout = timeouts.at(-1)!;

      // While it is ejected, every request goes to the healthy replica and succeeds.
      await waitFor(async () => (await send(), back()), "the ejected replica to come back");
      const whileEjected = sent.filter((s) => s.ejectedBefore && !s.backAtDone);
      expect(whileEjected.length).toBeGreaterThanOrEqual(5);
      expect(whileEjected.map((s) => [s.status, s.pid === badPid])).toEqual(whileEjected.map(() => [200, false]));

      // Back after its 2 s: it answers again once it stops hanging.
      rmSync(join(marks.path, "hang"));
      const fromBad = await waitFor(async () => {
        const s = await send();
        return s.pid === badPid ? s : null;
      }, "an answer from the replica that was ejected");
      expect(fromBad.status).toBe(200);
      expect(fromBad.doneAt - lastTimeout.sentAt).toBeGreaterThanOrEqual(2000);
      // A PATCH reaches the callers with the next routing snapshot: consecutiveFailures 0 turns ejection off.
      const res = await fetch(`${server.adminUrl}/api/applications/default/deployments/Model`, {
        method: "PATCH",
        body: JSON.stringify({ outlierDetection: { consecutiveFailures: 0 } }),
        headers: { "content-type": "application/json" },
      });
      expect(res.status).toBe(200);
      const config = (await (await fetch(`${server.adminUrl}/api/config`)).json()) as { applications: { deployments: { name: string; outlierDetection?: unknown }[] }[] };
      expect(config.applications[0]!.deployments.find((d) => d.name === "Model")!.outlierDetection).toEqual({ consecutiveFailures: 0, baseEjectionS: 30, maxEjectionS: 300, maxEjectionPercent: 10 });
      const ejections = () => server.output().match(/ejected replica Model#/g)!.length;
      const before = ejections();
      writeFileSync(join(marks.path, "hang"), "");
      const from = sent.length;
      // Four in a row (past the fixture's 3), not more: its calls that timed out still run and fill its maxOngoingRequests (5).
      await waitFor(async () => (await send(), sent.slice(from).filter((s) => s.status === 504).length >= 4), "four more timeouts of the hanging replica");
      expect(ejections()).toBe(before);
      rmSync(join(marks.path, "hang"));
      console.log(
        `outlier figures: ${timeouts.length} timeouts before the ejection, ${whileEjected.length} requests while ejected (all 200 from the healthy replica), ` +
          `first answer from the ejected replica ${((fromBad.doneAt - lastTimeout.sentAt) / 1000).toFixed(2)} s after the last timed-out request was sent`,
      );
    } finally {
      rmSync(join(marks.path, "hang"), { force: true });
      await stopCleanly(server);
    }
  });
});

describe("outlier detection, the policy", () => {
  const replica = (id: string): OutlierState => ({ info: { id }, failures: 0, ejected: false, ejections: 0, returnedAt: 0 });
  const policy = { consecutiveFailures: 2, baseEjectionS: 60, maxEjectionS: 150, maxEjectionPercent: 10 };

  it("never ejects the last replica, nor more than maxEjectionPercent (at least one)", () => {
    const d = new OutlierDetector("PolicyA", () => {});
    d.policy = policy;
    const rs = [replica("a"), replica("b"), replica("c")];
    for (let i = 0; i < 5; i++) for (const r of rs) d.failed(r, rs);
    expect(rs.map((r) => r.ejected)).toEqual([true, false, false]);

    const only = [replica("solo")];
    for (let i = 0; i < 5; i++) d.failed(only[0]!, only);
    expect(only[0]!.ejected).toBe(false);

    d.policy = { ...policy, maxEjectionPercent: 100 };
    const two = [replica("x"), replica("y")];
    for (let i = 0; i < 5; i++) for (const r of two) d.failed(r, two);
    expect(two.map((r) => r.ejected)).toEqual([true, false]);
  });

  it("a success resets the count; a replica ejected again soon stays out longer, up to maxEjectionS", () => {
    const d = new OutlierDetector("PolicyB", () => {});
    d.policy = policy;
    const rs = [replica("a"), replica("b")];
    const [a] = rs as [OutlierState, OutlierState];
    d.failed(a, rs);
    d.succeeded(a);
    d.failed(a, rs);
    expect(a.ejected).toBe(false);
    d.failed(a, rs);
    expect({ ejected: a.ejected, ejections: a.ejections }).toEqual({ ejected: true, ejections: 1 });
    // As if its 60 s had passed, then failing again at once: the second and third ejections in a row.
    const now = Date.now();
    const again = (at: number) => (Object.assign(a, { ejected: false, failures: 0, returnedAt: now }), d.failed(a, rs, at), d.failed(a, rs, at));
    expect(again(now + 1000)).toBe(120);
    expect(again(now + 1000)).toBe(150); // 3 × 60, capped at maxEjectionS
    expect(a.ejections).toBe(3);
    // Well behaved for 3 base periods: the multiplier falls back before counting this one.
    expect(again(now + 180_000)).toBe(60);
    expect(a.ejections).toBe(1);
  });

  it("counts timeouts and 503s of the replica itself, not those it passes on from a deeper hop", () => {
    const err = (code: "timeout" | "unavailable" | "user", deployment?: string) => new ServeError(code, "x", { deployment });
    expect(countsAgainstReplica(err("timeout", "Model"), "Model", true)).toBe(true);
    expect(countsAgainstReplica(err("unavailable", "Model"), "Model", false)).toBe(true);
    expect(countsAgainstReplica(err("timeout"), "Model", true)).toBe(true); // the proxy's requestTimeoutS names no deployment
    expect(countsAgainstReplica(err("timeout"), "Model", false)).toBe(false);
    expect(countsAgainstReplica(err("timeout", "Inner"), "DAGDriver", false)).toBe(false);
    expect(countsAgainstReplica(err("unavailable", "Inner"), "DAGDriver", false)).toBe(false);
    expect(countsAgainstReplica(err("user", "Model"), "Model", false)).toBe(false);
    expect(countsAgainstReplica(new ServeError("cancelled", "gone", { deployment: "Model" }), "Model", true)).toBe(false);
  });

  it("refuses settings past their bounds, saying what to fix", () => {
    const issues = (o: unknown) => {
      const r = deploymentOptionsSchema().safeParse({ outlierDetection: o });
      return r.success ? [] : r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
    };
    expect(issues({ consecutiveFailures: 1001 })).toEqual(["outlierDetection.consecutiveFailures: expected a whole number from 0 to 1000 (0 turns ejection off)"]);
    expect(issues({ maxEjectionPercent: 101 })).toEqual(["outlierDetection.maxEjectionPercent: expected a whole number from 0 to 100"]);
    expect(issues({ baseEjectionS: 60, maxEjectionS: 30 })).toEqual([
      "outlierDetection.maxEjectionS: maxEjectionS (30) is below baseEjectionS (60): raise maxEjectionS or lower baseEjectionS",
    ]);
    expect(issues({ baseEjectionS: 3_000_000 })[0]).toMatch(/^outlierDetection.baseEjectionS: expected a number of seconds > 0 and at most 2147483/);
    expect(issues({ ejectionS: 1 })).toEqual(['outlierDetection: unknown key "ejectionS" in outlierDetection: did you mean "maxEjectionS"?']);
  });
});

describe("maxRetries", () => {
  it("resends an idempotent call whose replica was killed mid-call to another replica (200); without it the call fails with 503", async () => {
    await using marks = tempDir("sb-retry-");
    const server = await startServer(join(FIXTURES, "retry.ts"), { env: { SB_MARKS: marks.path } });
    try {
      const killDuring = async (tag: string, maxRetries: number) => {
        const res = postJSON(server.url, { tag, maxRetries });
        const mark = join(marks.path, `started-${tag}`);
        const victim = Number(await waitFor(() => existsSync(mark) && readFileSync(mark, "utf8"), `the call ${tag} to start`));
        process.kill(victim, "SIGKILL");
        const r = await res;
        return { victim, status: r.status, body: (await r.json()) as Record<string, unknown> };
      };

      const without = await killDuring("plain", 0);
      expect(without.status).toBe(503);
      expect(without.body).toMatchObject({ error: "unavailable", message: expect.stringContaining("went away while handling the request") });

      const retried = await killDuring("retried", 1);
      expect(retried.status).toBe(200);
      expect(retried.body).toEqual({ tag: "retried", pid: expect.any(Number) });
      expect(retried.body.pid).not.toBe(retried.victim);
    } finally {
      await stopCleanly(server);
    }
  });

  it("is bounded: past 10 (or not a whole number) the handle refuses, saying why", async () => {
    class Echo {
      __call__(x: number) {
        return x;
      }
    }
    const w = deployment(Echo, { name: "echo" });
    const Caller = deployment(
      class Caller {
        constructor(private h: DeploymentHandle<Echo>) {}
        __call__(n: number) {
          return this.h.options({ maxRetries: n }).remote(1);
        }
      },
    );
    const input = new InputNode();
    const dag = DAGDriver.bind(Caller.bind(w.bind()).__call__.bind(input));
    expect(await dag.execute(10)).toBe(1);
    await expect(dag.execute(11)).rejects.toThrow(
      "handle.options({ maxRetries: 11 }) for echo: expected a whole number from 0 to 10; each retry runs the method again on another replica, so set it only for idempotent methods",
    );
    await expect(dag.execute(1.5)).rejects.toThrow("maxRetries: 1.5");
  });
});
