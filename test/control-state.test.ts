/**
 * The per-deployment state machine, stepped by hand: no process, no clock.
 * Time is a number the test moves.
 */
import { describe, expect, it } from "vitest";
import { DEFAULTS, LIMITS_DEFAULTS, type DeploymentConfig, type LimitsConfig } from "../src/config/schema.ts";
import { DeploymentState, type Decision } from "../src/runtime/control/deployment-state.ts";

const base: DeploymentConfig = { ...DEFAULTS, name: "Model", env: {} };

function machine(numReplicas: number, limits: Partial<LimitsConfig> = {}) {
  const all = { ...LIMITS_DEFAULTS, ...limits };
  return new DeploymentState("Model", { ...base, numReplicas }, "v1", () => all);
}

type Start = Extract<Decision, { kind: "start" }>;
const starts = (ds: Decision[]) => ds.filter((d): d is Start => d.kind === "start");
const stops = (ds: Decision[]) => ds.filter((d) => d.kind === "stop");

/** Starts what the machine decides and makes each ready; returns the new replicas' keys. */
function startAll(d: DeploymentState, now: number, budget = 100): number[] {
  return starts(d.decide(now, budget)).map((s) => {
    const r = d.started(s, now);
    d.ready(r.key, now);
    return r.key;
  });
}

describe("the deployment state machine", () => {
  it("starts what is missing under new ids, at most the start budget at a time", () => {
    const d = machine(3);
    const first = starts(d.decide(0, 2));
    expect(first.map((s) => s.id)).toEqual(["Model#0", "Model#1"]);
    for (const s of first) d.started(s, 0);
    expect(starts(d.decide(0, 0))).toEqual([]);
    expect(starts(d.decide(0, 1)).map((s) => s.id)).toEqual(["Model#2"]);
  });

  it("restarts a replica that dies at once the first time, then after a backoff that doubles up to the cap", () => {
    const d = machine(1, { restartBackoffS: 1, restartBackoffMaxS: 4 });
    let now = 0;
    startAll(d, now);
    const waits: number[] = [];
    for (let i = 1; i <= 6; i++) {
      const [r] = d.replicas.values();
      now += 100; // it runs 0.1 s, then exits
      d.exited(r!.key, now, "exit code 1");
      const waitMs = d.backoffS(now) * 1000;
      waits.push(waitMs / 1000);
      if (waitMs > 0) expect(d.decide(now + waitMs - 1, 10)).toEqual([]);
      now += waitMs;
      const [s] = starts(d.decide(now, 10));
      expect([s!.id, s!.restarts]).toEqual(["Model#0", i]);
      d.ready(d.started(s!, now).key, now);
    }
    expect(waits).toEqual([0, 1, 2, 4, 4, 4]);
  });

  it("shows UNHEALTHY with how the replica ended and the next restart while it crash-loops, and starts counting again after a healthy while", () => {
    const d = machine(1, { restartBackoffS: 2, restartResetAfterS: 60 });
    startAll(d, 0);
    d.failed({ message: "ignored: it was ready" });
    let [r] = d.replicas.values();
    d.exited(r!.key, 1000, "exit code 3");
    expect(d.status(1000)).toBe("UPDATING"); // one death: back at once
    const again = starts(d.decide(1000, 10))[0]!;
    d.ready(d.started(again, 1000).key, 1000);
    [r] = d.replicas.values();
    d.exited(r!.key, 1500, "killed by SIGKILL (out of memory, or killed from outside)");
    expect(d.status(1500)).toBe("UNHEALTHY");
    expect(d.message(1500)).toBe(
      "replica Model#0 killed by SIGKILL (out of memory, or killed from outside) after running 0.5 s; 2 failures in a row, next restart in 2.0 s",
    );
    expect(d.restartsTotal).toBe(2);
    // Back after its backoff, it is still UNHEALTHY until it has run well for restartResetAfterS.
    const back = starts(d.decide(3500, 10))[0]!;
    d.ready(d.started(back, 3500).key, 3500);
    expect(d.status(3600)).toBe("UNHEALTHY");
    [r] = d.replicas.values();
    d.exited(r!.key, 3600, "exit code 1");
    expect(d.backoffS(3600)).toBe(4);
    // After its backoff it runs for longer than restartResetAfterS: its next exit restarts at once.
    const third = starts(d.decide(7600, 10))[0]!;
    d.ready(d.started(third, 7600).key, 7600);
    expect(d.status(7600 + 61_000)).toBe("HEALTHY");
    [r] = d.replicas.values();
    d.exited(r!.key, 7600 + 61_000, "exit code 1");
    expect(d.backoffS(7600 + 61_000)).toBe(0);
    expect(d.status(7600 + 61_000)).toBe("UPDATING");
  });

  it("starts a replica its engine took away (a deleted pod) again at once, counting no failure and no restart, and never turns UNHEALTHY for it", () => {
    const d = machine(1, { restartBackoffS: 2 });
    let now = 0;
    startAll(d, now);
    for (let i = 1; i <= 5; i++) {
      const [r] = d.replicas.values();
      now += 100; // deleted 0.1 s after it was ready, five times in a row (a node drain, an HPA flapping)
      d.evicted(r!.key);
      expect(d.backoffS(now)).toBe(0);
      expect(d.status(now)).toBe("UPDATING");
      const [s] = starts(d.decide(now, 10));
      expect([s!.id, s!.restarts]).toEqual(["Model#0", i]);
      d.ready(d.started(s!, now).key, now);
      expect(d.status(now)).toBe("HEALTHY");
    }
    expect(d.restartsTotal).toBe(0);
    expect(d.message(now)).toBe("");
    // A crash after all that is its first failure: back at once, as any first death.
    const [r] = d.replicas.values();
    d.exited(r!.key, now + 100, "exit code 1");
    expect(d.backoffS(now + 100)).toBe(0);
    expect(d.restartsTotal).toBe(1);
  });

  it("counts starts that fail before ready, is UNHEALTHY after three, and gives up at maxConstructorRetries until its next change", () => {
    const d = machine(1, { maxConstructorRetries: 4, restartBackoffS: 1 });
    let now = 0;
    for (let i = 0; i < 4; i++) {
      const [s] = starts(d.decide(now, 10));
      expect(s).toBeDefined();
      const r = d.started(s!, now);
      d.failed({ message: "boom in the constructor", stack: "Error: boom\n  at new Model" });
      d.exited(r.key, now, "exit code 1");
      now += d.backoffS(now) * 1000;
    }
    expect(d.gaveUp).toBe(true);
    expect(d.status(now)).toBe("UNHEALTHY");
    expect(d.message(now)).toContain("gave up after 4 failed starts in a row (limits.maxConstructorRetries): replica Model#0 exit code 1 before it was ready: boom in the constructor");
    expect(starts(d.decide(now + 1e9, 10))).toEqual([]);
    d.setTarget({ ...d.config }, "v1"); // the same target again (another deployment changed): still given up
    expect(starts(d.decide(now + 1e9, 10))).toEqual([]);
    d.setTarget(d.config, "v2"); // new code: try again, at once
    expect(starts(d.decide(now, 10)).map((s) => s.id)).toEqual(["Model#0"]);
  });

  it("scales down while replicas drain: waiting ids go first, then starting replicas, then the least busy; a scale-up meanwhile starts new ids", () => {
    const d = machine(4);
    const keys = startAll(d, 0);
    const busy = [3, 0, 7, 1];
    [...d.replicas.values()].forEach((r, i) => (r.ongoing = busy[i]!));
    d.setTarget({ ...d.config, numReplicas: 2 }, "v1");
    const down = stops(d.decide(1, 10));
    expect(down.map((s) => s.id)).toEqual(["Model#1", "Model#3"]);
    expect(down.every((s) => s.kind === "stop" && s.graceful)).toBe(true);
    expect([...d.replicas.values()].map((r) => r.state)).toEqual(["RUNNING", "STOPPING", "RUNNING", "STOPPING"]);
    d.setTarget({ ...d.config, numReplicas: 3 }, "v1");
    expect(starts(d.decide(2, 10)).map((s) => s.id)).toEqual(["Model#4"]);
    expect(keys).toHaveLength(4);
  });

  it("rolls new code in: an old replica stops only once a new one serves in its place, also when a PATCH changes the count half-way", () => {
    const d = machine(2);
    startAll(d, 0);
    d.setTarget(d.config, "v2");
    const news = starts(d.decide(1, 10));
    expect(news).toHaveLength(2);
    const [a, b] = news.map((s) => d.started(s, 1));
    expect(stops(d.decide(1, 10))).toEqual([]); // none serves yet
    d.ready(a!.key, 2);
    expect(stops(d.decide(2, 10)).map((s) => s.id)).toEqual(["Model#0"]);
    // A PATCH to 3 replicas in the middle of the roll: one more new replica, the last old one stays until two new serve.
    d.setTarget({ ...d.config, numReplicas: 3 }, "v2");
    const more = d.decide(3, 10);
    expect(more.map((x) => x.kind)).toEqual(["start"]);
    const c = d.started(starts(more)[0]!, 3);
    d.ready(b!.key, 4);
    expect(stops(d.decide(4, 10))).toEqual([]); // 2 new serving + 1 old = 3 = target
    d.ready(c.key, 5);
    expect(stops(d.decide(5, 10)).map((s) => s.id)).toEqual(["Model#1"]);
    for (const r of [...d.replicas.values()].filter((x) => x.state === "STOPPING")) d.exited(r.key, 6, "exit code 0");
    expect(d.status(6)).toBe("HEALTHY");
    expect(d.restartsTotal).toBe(0);
  });

  it("never counts a dead id twice: a scale-down below the waiting ids forgets them", () => {
    const d = machine(3, { restartBackoffS: 100 });
    startAll(d, 0);
    for (const r of [...d.replicas.values()]) d.exited(r.key, 10, "exit code 1");
    expect(startAll(d, 10)).toHaveLength(3); // first deaths: back at once, under the same ids
    for (const r of [...d.replicas.values()]) d.exited(r.key, 20, "exit code 1");
    expect(d.waiting()).toHaveLength(3);
    d.setTarget({ ...d.config, numReplicas: 1 }, "v1");
    expect(d.decide(30, 10)).toEqual([]);
    expect(d.waiting()).toHaveLength(1);
  });
});
