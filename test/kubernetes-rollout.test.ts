/**
 * The rollout step (src/cluster/kubernetes/rollout.ts) driven to the end
 * against a simulated cluster: each step's counts are applied, a pod told
 * to go is gone at once, and one pod asked for becomes ready per step.
 */
import { describe, expect, it } from "vitest";
import { leavingCount, rolloutStep, rolloverStep, STARVED_MS, type RolloutState, type RolloutStep } from "../src/cluster/kubernetes/rollout.ts";

/** Runs steps until done; returns every step and the state each was taken in. */
function drive(start: RolloutState, until?: (s: RolloutState, i: number) => RolloutState | null): { steps: RolloutStep[]; states: RolloutState[] } {
  const steps: RolloutStep[] = [];
  const states: RolloutState[] = [];
  let s = start;
  for (let i = 0; i < 100; i++) {
    s = until?.(s, i) ?? s;
    states.push(s);
    const step = rolloutStep(s);
    steps.push(step);
    if (step.done) return { steps, states };
    // The cluster: a lowered count takes effect at once; of the pods asked for, one more is ready at each look.
    const apply = (c: { ready: number }, want: number) => ({ replicas: want, ready: Math.min(want, c.ready + 1) });
    s = { ...s, old: apply(s.old, step.old), next: apply(s.next, step.next) };
  }
  throw new Error("the rollout did not finish in 100 steps");
}

const fresh = (target: number, surge?: 0 | 1): RolloutState => ({ target, old: { replicas: target, ready: target }, next: { replicas: 0, ready: 0 }, direction: "forward", surge });
const pods = (s: RolloutState) => s.old.replicas + s.next.replicas;

describe("rolloutStep", () => {
  it("moves 3 replicas to the new revision with never more than one extra pod, traffic following the ready pods", () => {
    const { steps, states } = drive(fresh(3));
    expect(Math.max(...states.map(pods))).toBe(4);
    expect(Math.max(...steps.map((s) => s.old + s.next))).toBe(4);
    const nextWeights = steps.map((s) => s.weights.next);
    expect(nextWeights).toEqual([...nextWeights].sort((a, b) => a - b)); // only ever up
    expect(new Set(nextWeights)).toEqual(new Set([0, 33, 67, 100]));
    expect(steps.at(-1)).toEqual({ old: 0, next: 3, weights: { old: 0, next: 100 }, done: true });
    // Every step's weights add to 100: no moment without a ready revision to send to.
    expect(steps.every((s) => s.weights.old + s.weights.next === 100)).toBe(true);
  });

  it("with surge 0 (no spare GPU) never runs more pods than the target: an old pod goes first", () => {
    const { steps, states } = drive(fresh(2, 0));
    expect(Math.max(...states.map(pods), ...steps.map((s) => s.old + s.next))).toBe(2);
    expect(steps[0]).toEqual({ old: 1, next: 0, weights: { old: 100, next: 0 }, done: false });
    expect(steps.at(-1)!.done).toBe(true);
  });

  it("rolls back from half-way by moving the weights back the way they came", () => {
    const { steps } = drive(fresh(4), (s, i) => (i === 5 ? { ...s, direction: "back" } : null));
    const i = 5;
    const before = steps[i - 1]!.weights.next;
    expect(before).toBeGreaterThan(0);
    expect(before).toBeLessThan(100);
    const back = steps.slice(i).map((s) => s.weights.next);
    expect(back).toEqual([...back].sort((a, b) => b - a)); // only ever down
    expect(steps.at(-1)).toEqual({ old: 4, next: 0, weights: { old: 100, next: 0 }, done: true });
  });

  it("waits while a new pod is starting, and follows a target lowered mid-way", () => {
    const starting = rolloutStep({ target: 3, old: { replicas: 3, ready: 3 }, next: { replicas: 1, ready: 0 }, direction: "forward" });
    expect(starting).toEqual({ old: 3, next: 1, weights: { old: 100, next: 0 }, done: false });
    const lowered = rolloutStep({ target: 1, old: { replicas: 1, ready: 1 }, next: { replicas: 2, ready: 2 }, direction: "forward" });
    expect(lowered).toEqual({ old: 1, next: 1, weights: { old: 50, next: 50 }, done: false });
    expect(rolloutStep({ target: 0, old: { replicas: 0, ready: 0 }, next: { replicas: 0, ready: 0 }, direction: "forward" })).toEqual({ old: 0, next: 0, weights: { old: 0, next: 0 }, done: true });
  });
});

describe("leavingCount (the previous side of a graph, deployment by deployment)", () => {
  it("keeps one pod of each deployment behind the ingress while an ingress pod still runs, then lets it go", () => {
    // DAGDriver (the ingress, 3 replicas) calls Model (1 replica): on its own, Model's one old pod would go at the second step.
    const targets = { DAGDriver: 3, Model: 1 } as const;
    type D = keyof typeof targets;
    let s = Object.fromEntries(Object.entries(targets).map(([d, t]) => [d, fresh(t)])) as Record<D, RolloutState>;
    /** An ingress pod told to go is counted until it drained: its lowered count takes effect one step later. */
    let draining = 0;
    const seen: { ingressPods: number; modelPods: number }[] = [];
    for (let i = 0; i < 100 && !(s.DAGDriver.old.replicas === 0 && s.Model.old.replicas === 0); i++) {
      const ingressPods = s.DAGDriver.old.replicas + draining;
      seen.push({ ingressPods, modelPods: s.Model.old.replicas });
      const steps = { DAGDriver: rolloutStep(s.DAGDriver), Model: rolloutStep(s.Model) };
      const apply = (c: { ready: number }, want: number) => ({ replicas: want, ready: Math.min(want, c.ready + 1) });
      const next = { ...s };
      for (const d of ["DAGDriver", "Model"] as const) {
        const old = leavingCount({ deployment: d, ingress: "DAGDriver", ingressPods, now: s[d].old.replicas, step: steps[d].old });
        next[d] = { ...s[d], old: apply(s[d].old, old), next: apply(s[d].next, steps[d].next) };
      }
      draining = s.DAGDriver.old.replicas - next.DAGDriver.old.replicas;
      s = next;
    }
    expect(s.DAGDriver.old.replicas + s.Model.old.replicas).toBe(0);
    // Never a moment with an ingress pod left and no Model pod behind it; Model's last pod goes once the ingress's are gone.
    expect(seen.filter((x) => x.ingressPods > 0 && x.modelPods === 0)).toEqual([]);
    expect(seen.at(-1)).toEqual({ ingressPods: 0, modelPods: 1 });
  });

  it("leaves the ingress itself, and every deployment once no ingress pod runs, to the step", () => {
    expect(leavingCount({ deployment: "DAGDriver", ingress: "DAGDriver", ingressPods: 1, now: 1, step: 0 })).toBe(0);
    expect(leavingCount({ deployment: "Model", ingress: "DAGDriver", ingressPods: 0, now: 1, step: 0 })).toBe(0);
    expect(leavingCount({ deployment: "Model", ingress: "DAGDriver", ingressPods: 2, now: 3, step: 2 })).toBe(2);
    expect(leavingCount({ deployment: "Model", ingress: "DAGDriver", ingressPods: 2, now: 0, step: 0 })).toBe(0); // none to keep
  });
});

describe("rolloverStep (the claim-by-claim form the controller runs)", () => {
  it("lets an old pod go only when a new one waits and every claim serves, and caps the new revision one above what the old leave", () => {
    expect(rolloverStep({ target: 2, running: 2, idle: 1, old: 2, starvedMs: 0 })).toEqual({ lowerOld: true, cap: 1 });
    expect(rolloverStep({ target: 2, running: 1, idle: 1, old: 1, starvedMs: 0 })).toEqual({ lowerOld: false, cap: 2 }); // a claim is being taken over
    expect(rolloverStep({ target: 2, running: 2, idle: 0, old: 1, starvedMs: 0 })).toEqual({ lowerOld: false, cap: 2 }); // the next new pod is not there yet
    expect(rolloverStep({ target: 3, running: 3, idle: 0, old: 0, starvedMs: 0 })).toEqual({ lowerOld: false, cap: 3 }); // done: no cap below the target
  });

  it("frees room when claims starve with no pod to take them (no spare node or GPU for a new pod), not before", () => {
    expect(rolloverStep({ target: 2, running: 1, idle: 0, old: 2, starvedMs: STARVED_MS - 1 }).lowerOld).toBe(false);
    expect(rolloverStep({ target: 2, running: 1, idle: 0, old: 2, starvedMs: STARVED_MS }).lowerOld).toBe(true);
  });

  it("lets old pods of other code go at once, and the new revision take the whole target: they serve nothing here", () => {
    expect(rolloverStep({ target: 3, running: 1, idle: 0, old: 3, starvedMs: 0, oldServes: false })).toEqual({ lowerOld: true, cap: 3 });
  });
});
