/**
 * Code upgrades without double capacity, as a pure function: one step of
 * moving a serve deployment from its old revision (a Deployment
 * `<name>-r<hash>`) to a new one, or back.
 *
 * KubeRay's RayService builds a whole second cluster for an upgrade; on GPUs
 * that means double the devices, and a Pending upgrade when they are not
 * there. Here the two revisions together never run more than `target +
 * surge` pods (surge 1 by default, 0 where no spare device exists: one old
 * pod goes first), a new pod takes traffic only once ready, and an old pod
 * goes only after a new one is ready to take its share. Traffic follows the
 * ready pods: the weights given are each revision's share of the ready
 * replicas that stay. Rolling back is the same step with the revisions'
 * roles swapped, so the weights move back the way they came.
 *
 * The caller reads both Deployments' counts and ready pods, applies the
 * step (two `deployments/scale` PATCHes at most, and the weights into the
 * split), and calls again when something changed, until `done`.
 */

/** One revision as Kubernetes reports it: pods asked for, pods ready. */
export interface RevisionCount {
  replicas: number;
  ready: number;
}

export interface RolloutState {
  /** Replicas the deployment should run when the move is over. */
  target: number;
  old: RevisionCount;
  next: RevisionCount;
  /** `forward`: old → next; `back`: next → old (a rollback). */
  direction: "forward" | "back";
  /** Pods allowed above `target` while moving: 1, or 0 when no spare device exists. Default 1. */
  surge?: 0 | 1;
}

export interface RolloutStep {
  /** Counts to set on the two Deployments. */
  old: number;
  next: number;
  /** Percent of the deployment's traffic to each revision (they add up to 100; both 0 when no pod is ready). */
  weights: { old: number; next: number };
  /** Nothing left to move: the revision moved to runs `target` ready pods and the other none. */
  done: boolean;
}

/**
 * The next step of a rollout or rollback.
 * @example rolloutStep({ target: 3, old: { replicas: 3, ready: 3 }, next: { replicas: 0, ready: 0 }, direction: "forward" })
 *   // → { old: 3, next: 1, weights: { old: 100, next: 0 }, done: false }
 */
export function rolloutStep(s: RolloutState): RolloutStep {
  const surge = s.surge ?? 1;
  const forward = s.direction === "forward";
  const from = { ...(forward ? s.old : s.next) };
  const to = { ...(forward ? s.next : s.old) };
  const settled = to.ready >= to.replicas;
  if (to.replicas > s.target) to.replicas = s.target; // the target went down meanwhile
  else if (settled && from.replicas + to.replicas > s.target && from.replicas > 0) from.replicas--; // a new pod is ready: one old one goes
  else if (settled && to.replicas < s.target) {
    if (from.replicas + to.replicas < s.target + surge) to.replicas++;
    else if (from.replicas > 0) from.replicas--; // no room to surge: an old pod frees its place first
  }
  // Ready pods that stay carry the traffic; one told to go stops taking it at once.
  const fromReady = Math.min(from.ready, from.replicas);
  const toReady = Math.min(to.ready, to.replicas);
  const total = fromReady + toReady;
  const toWeight = total === 0 ? 0 : Math.round((100 * toReady) / total);
  const fromWeight = total === 0 ? 0 : 100 - toWeight;
  const done = from.replicas === 0 && to.replicas === s.target && to.ready >= s.target;
  return forward
    ? { old: from.replicas, next: to.replicas, weights: { old: fromWeight, next: toWeight }, done }
    : { old: to.replicas, next: from.replicas, weights: { old: toWeight, next: fromWeight }, done };
}

/**
 * The count a step may give one deployment of the side that is leaving,
 * given its graph: a deployment behind the ingress keeps one pod while an
 * ingress pod still runs. A request the ingress took just before its
 * replica left the split still calls the deployments behind it; with none of
 * them left, that call would wait for a replica that never comes until the
 * ingress's drain timed out, and the request would fail. (An ingress pod's
 * count goes down only once it drained, so this holds until it is gone.)
 * @example leavingCount({ deployment: "Model", ingress: "DAGDriver", ingressPods: 1, now: 1, step: 0 }) // 1
 */
export function leavingCount(c: { deployment: string; ingress: string; ingressPods: number; now: number; step: number }): number {
  if (c.deployment === c.ingress || c.ingressPods === 0) return c.step;
  return Math.max(c.step, Math.min(1, c.now));
}

/** What the controller sees of a deployment while its previous revisions still run pods. */
export interface RolloverView {
  /** The controller's target replicas for the deployment. */
  target: number;
  /** Its replicas serving (claims RUNNING), whichever revision's pods they are bound to. */
  running: number;
  /** Pods of the deployment connected and unclaimed: new-revision pods waiting to take over. */
  idle: number;
  /** Pods the previous revisions' Deployments still ask for. */
  old: number;
  /** How long claims have waited with no pod to bind (ms; 0 when none waits). */
  starvedMs: number;
  /** False when the previous revisions run other code: their pods can take no claim of this controller. Default true. */
  oldServes?: boolean;
}

/** A claim that waits this long with no pod to take it means the new pods cannot start beside the old (no room, no spare GPU): an old one goes first. */
export const STARVED_MS = 5000;

/**
 * The wired form of the rollout, claim by claim: the previous revisions go
 * down one pod at a time, each time a new-revision pod is connected and
 * waiting (so a claim the old pod leaves is taken at once) — or, when claims
 * wait with no pod to take them, to free the room the new pods need. The
 * current revision is capped at `target − old + 1`: one pod above the
 * target, never a second full set. Old pods of other code serve nothing here
 * (this controller cannot claim them): they all go at once, and the current
 * revision may take the whole target.
 * @example rolloverStep({ target: 2, running: 2, idle: 1, old: 2, starvedMs: 0 }) // { lowerOld: true, cap: 1 }
 */
export function rolloverStep(v: RolloverView): { lowerOld: boolean; cap: number } {
  const cap = Math.max(1, v.target - v.old + 1);
  if (v.old === 0) return { lowerOld: false, cap: v.target };
  if (v.oldServes === false) return { lowerOld: true, cap: v.target };
  const replacementWaits = v.idle >= 1 && v.running >= v.target;
  const starved = v.running < v.target && v.idle === 0 && v.starvedMs >= STARVED_MS;
  return { lowerOld: replacementWaits || starved, cap };
}
