import { deepEqual } from "../../config/diff.ts";
import type { DeploymentConfig, LimitsConfig } from "../../config/schema.ts";
import type { AutoscaleState } from "../autoscale.ts";
import { failuresAfterExit, restartDelayS } from "./backoff.ts";
import { formatReplicaId, type ReplicaId } from "./ids.ts";

/** Ray's replica states; the transition table is the only way they change. */
export type ReplicaState = "STARTING" | "UPDATING" | "RUNNING" | "STOPPING";

const TRANSITIONS: Record<ReplicaState, readonly ReplicaState[]> = {
  STARTING: ["RUNNING", "STOPPING"],
  RUNNING: ["UPDATING", "STOPPING"],
  UPDATING: ["RUNNING", "STOPPING"],
  STOPPING: [],
};

/** Starts that fail in a row before the deployment shows UNHEALTHY (and a new application DEPLOY_FAILED). */
export const UNHEALTHY_AFTER_START_FAILURES = 3;

/** One replica as the state machine knows it: no process, no socket. */
export interface ReplicaView {
  /** Unique per process started: a replacement shares its predecessor's id while that one drains. */
  readonly key: number;
  readonly id: ReplicaId;
  /** The code version it runs; another than the deployment's means it is rolled away. */
  readonly version: string;
  state: ReplicaState;
  readonly startedAt: number;
  /** When it became ready; 0 while it starts. */
  readyAt: number;
  /** Calls in flight, as it last reported. */
  ongoing: number;
  /** The userConfig generation it runs. */
  userConfigGen: number;
  /** Times this replica's id was started again after it died or was replaced. */
  readonly restarts: number;
  /** Exits in a row of this id before this start (0: it has not failed). */
  readonly failures: number;
}

/** A replica id whose process is gone and that waits, maybe in backoff, to be started again. */
interface Slot {
  id: ReplicaId;
  restarts: number;
  failures: number;
  /** Not started again before this time (ms). */
  notBefore: number;
}

/** What the loop should do; the state machine itself does nothing. */
export type Decision =
  | { kind: "start"; id: ReplicaId; restarts: number; failures: number }
  | { kind: "stop"; key: number; id: ReplicaId; graceful: boolean };

/** The last thing that went wrong, for status. */
export interface Failure {
  message: string;
  stack?: string;
}

/**
 * One deployment's target and replicas, and the decisions that move the one
 * toward the other: start what is missing (paced, and after a backoff when
 * replicas keep dying), stop what is extra, roll old code away once new code
 * serves. Pure: time comes in as an argument, decisions go out as data.
 */
export class DeploymentState {
  readonly replicas = new Map<number, ReplicaView>();
  readonly #slots: Slot[] = [];
  #nextIndex = 0;
  #nextKey = 1;
  /** Starts in a row (of this version) whose replica never became ready. */
  startFailures = 0;
  /** Set when startFailures reached limits.maxConstructorRetries: no more starts until the next change. */
  gaveUp = false;
  lastFailure: Failure | null = null;
  /** Restarts of every replica of this deployment, ever. */
  restartsTotal = 0;
  userConfigGen = 0;
  autoscale: AutoscaleState = { desired: null, since: 0 };
  /** No longer in the application's graph: it goes once nothing of the old code calls it. */
  removed = false;
  /** An engine's ceiling on the target while it moves the deployment between code revisions (Kubernetes rollout); undefined: none. */
  ceiling: number | undefined = undefined;

  constructor(
    readonly name: string,
    public config: DeploymentConfig,
    public version: string,
    readonly limits: () => LimitsConfig,
  ) {}

  /**
   * A new target. New code (version) or a changed config gives a deployment
   * that gave up another try; the same target again (another deployment's
   * change re-applies the whole application) changes nothing.
   */
  setTarget(config: DeploymentConfig, version: string): void {
    if (version === this.version && deepEqual(config, this.config)) return;
    if (version !== this.version) {
      this.version = version;
      this.startFailures = 0;
      this.lastFailure = null;
      // Slots in backoff ran the old code: the new code starts at once.
      for (const s of this.#slots) s.notBefore = 0;
    }
    this.config = config;
    this.gaveUp = false;
    if (this.startFailures >= this.limits().maxConstructorRetries) this.startFailures = 0;
  }

  /** Replicas wanted now: numReplicas, or the autoscaler's count within its bounds. */
  target(): number {
    return Math.min(this.wanted(), this.ceiling ?? Number.MAX_SAFE_INTEGER);
  }

  /** The target its config (and autoscaler) asks for, whatever the ceiling. */
  wanted(): number {
    const c = this.config;
    if (c.numReplicas !== "auto" && !c.autoscalingConfig) return c.numReplicas as number;
    const a = c.autoscalingConfig;
    if (!a) return 1;
    const wanted = this.autoscale.desired ?? (typeof c.numReplicas === "number" ? c.numReplicas : a.minReplicas);
    return Math.min(Math.max(wanted, a.minReplicas), a.maxReplicas);
  }

  /** Replicas that take calls. */
  serving(): ReplicaView[] {
    return [...this.replicas.values()].filter((r) => r.state === "RUNNING" || r.state === "UPDATING");
  }

  /** Live replicas of the current code (not stopping). */
  current(): ReplicaView[] {
    return [...this.replicas.values()].filter((r) => r.version === this.version && r.state !== "STOPPING");
  }

  /** Seconds until the next restart of a replica in backoff (0: none waits). */
  backoffS(now: number): number {
    return Math.max(0, ...this.#slots.map((s) => (s.notBefore - now) / 1000));
  }

  /** Replica ids waiting to be started again, with their failures in a row. */
  waiting(): readonly Readonly<Slot>[] {
    return this.#slots;
  }

  /**
   * The decisions for now; stops are marked STOPPING at once. At most `startBudget` starts (the loop's pacing).
   * Scale up: dead ids first (once their backoff is over), then new ids;
   * scale down: waiting ids, then starting replicas, then the least busy.
   * Rolling update: an old-code replica stops only when a new one serves in its place.
   */
  decide(now: number, startBudget: number): Decision[] {
    const out: Decision[] = [];
    const target = this.target();
    const current = this.current();
    // Ids that wait count toward the target: a crash loop must not be side-stepped by fresh ids.
    let missing = target - current.length;
    while (this.#slots.length > Math.max(0, missing)) this.#slots.pop();
    if (!this.gaveUp) {
      for (const s of [...this.#slots].sort((a, b) => a.notBefore - b.notBefore)) {
        if (startBudget <= 0 || s.notBefore > now) break;
        this.#slots.splice(this.#slots.indexOf(s), 1);
        out.push({ kind: "start", id: s.id, restarts: s.restarts + 1, failures: s.failures });
        startBudget--;
        missing--;
      }
      missing -= this.#slots.length;
      for (; missing > 0 && startBudget > 0; missing--, startBudget--) {
        out.push({ kind: "start", id: formatReplicaId(this.name, this.#nextIndex++), restarts: 0, failures: 0 });
      }
    }
    const newServing = current.filter((r) => r.state !== "STARTING").length;
    const old = [...this.replicas.values()].filter((r) => r.version !== this.version && r.state !== "STOPPING");
    let excessOld = old.length + newServing - target;
    for (const r of old.sort(startingFirst)) if (excessOld-- > 0) out.push(this.#stop(r));
    const extra = current.length - target;
    if (extra > 0) for (const r of current.sort(startingFirst).slice(0, extra)) out.push(this.#stop(r));
    return out;
  }

  /** A stop decided is a stop made: the replica leaves the routing table before anything else looks. */
  #stop(r: ReplicaView): Decision {
    const graceful = r.state !== "STARTING";
    this.to(r.key, "STOPPING");
    return { kind: "stop", key: r.key, id: r.id, graceful };
  }

  /** The loop started a process for a decision. */
  started(d: Extract<Decision, { kind: "start" }>, now: number): ReplicaView {
    const view: ReplicaView = {
      key: this.#nextKey++,
      id: d.id,
      version: this.version,
      state: "STARTING",
      startedAt: now,
      readyAt: 0,
      ongoing: 0,
      userConfigGen: this.userConfigGen,
      restarts: d.restarts,
      failures: d.failures,
    };
    this.replicas.set(view.key, view);
    return view;
  }

  to(key: number, next: ReplicaState): void {
    const r = this.replicas.get(key);
    if (!r || r.state === next) return;
    if (!TRANSITIONS[r.state].includes(next)) throw new Error(`replica ${r.id}: ${r.state} → ${next} is not a valid transition`);
    r.state = next;
  }

  ready(key: number, now: number): void {
    const r = this.replicas.get(key);
    if (!r || r.state !== "STARTING") return;
    this.to(key, "RUNNING");
    r.readyAt = now;
    if (r.version === this.version) {
      this.startFailures = 0;
      if (!this.#slots.length && this.#crashLooping(now).length === 0) this.lastFailure = null;
    }
  }

  /** The replica said why it could not start or is about to exit (its constructor threw, an uncaught exception…). */
  failed(error: Failure): void {
    this.lastFailure = error;
  }

  /**
   * A replica's process ended. Asked to (STOPPING): it is gone. Unasked: its
   * id waits to start again, after a backoff that grows while it keeps failing.
   */
  exited(key: number, now: number, reason: string): void {
    const r = this.#ended(key);
    if (!r) return;
    const id = r.id;
    const ranForS = r.readyAt ? (now - r.readyAt) / 1000 : null;
    const failures = failuresAfterExit(r.failures, ranForS, this.limits());
    const delayS = restartDelayS(failures, this.limits());
    this.#slots.push({ id, restarts: r.restarts, failures, notBefore: now + delayS * 1000 });
    this.restartsTotal++;
    if (!r.readyAt && r.version === this.version) {
      this.startFailures++;
      if (this.startFailures >= this.limits().maxConstructorRetries) this.gaveUp = true;
    }
    const what = r.readyAt ? `replica ${id} ${reason} after running ${ranForS!.toFixed(1)} s` : `replica ${id} ${reason} before it was ready`;
    const prior = this.lastFailure && !this.lastFailure.message.startsWith("replica ") ? `: ${this.lastFailure.message}` : "";
    this.lastFailure = { message: `${what}${prior}`, stack: this.lastFailure?.stack };
  }

  /**
   * A replica's engine took it away (ExitInfo.evicted: Kubernetes deleted its
   * pod, Swarm moved its task): its id starts again at once, and it counts as
   * neither a failure nor a restart, so a node drain never makes a
   * deployment UNHEALTHY nor delays the replacement.
   */
  evicted(key: number): void {
    const r = this.#ended(key);
    if (r) this.#slots.push({ id: r.id, restarts: r.restarts, failures: r.failures, notBefore: 0 });
  }

  /** Forgets a replica whose process ended; returns it unless it was asked to stop (nothing starts again for it then). */
  #ended(key: number): ReplicaView | undefined {
    const r = this.replicas.get(key);
    if (!r) return undefined;
    this.replicas.delete(key);
    return r.state === "STOPPING" ? undefined : r;
  }

  /**
   * A replica that is unhealthy or stuck is replaced: its id goes to the
   * waiting list at once (no backoff). One replaced for its own fault
   * (`failure`: over its memory limit) counts as a failure in a row, under
   * the same backoff as an exit.
   */
  replaced(key: number, now: number, failure?: Failure): void {
    const r = this.replicas.get(key);
    if (!r || r.state === "STOPPING") return;
    this.to(key, "STOPPING");
    this.restartsTotal++;
    if (!failure) return void this.#slots.push({ id: r.id, restarts: r.restarts, failures: r.failures, notBefore: 0 });
    const failures = failuresAfterExit(r.failures, r.readyAt ? (now - r.readyAt) / 1000 : null, this.limits());
    this.#slots.push({ id: r.id, restarts: r.restarts, failures, notBefore: now + restartDelayS(failures, this.limits()) * 1000 });
    this.lastFailure = failure;
  }

  /**
   * Failures in a row of each id that crash-loops: waiting in backoff after
   * two or more, or started again after them and not yet healthy for
   * restartResetAfterS. Without the second kind, status would flip between
   * UNHEALTHY and UPDATING each time the replica comes back for a moment.
   */
  #crashLooping(now: number): number[] {
    const resetMs = this.limits().restartResetAfterS * 1000;
    const waiting = this.#slots.filter((s) => s.failures >= 2).map((s) => s.failures);
    const back = [...this.replicas.values()].filter((r) => r.failures >= 2 && r.state !== "STOPPING" && !(r.readyAt && now - r.readyAt >= resetMs));
    return [...waiting, ...back.map((r) => r.failures)];
  }

  /** UNHEALTHY while it crash-loops or cannot start; HEALTHY with exactly its target of current-code replicas running. */
  status(now: number): "UPDATING" | "HEALTHY" | "UNHEALTHY" {
    if (this.gaveUp || this.startFailures >= UNHEALTHY_AFTER_START_FAILURES || this.#crashLooping(now).length) return "UNHEALTHY";
    const target = this.target();
    const live = [...this.replicas.values()].filter((r) => r.state !== "STOPPING");
    const ready = live.filter((r) => r.state === "RUNNING" && r.version === this.version).length;
    return ready === target && live.length === target && !this.#slots.length ? "HEALTHY" : "UPDATING";
  }

  /** What status says about it: why it is unhealthy, and when it tries again. */
  message(now: number): string {
    const f = this.lastFailure;
    if (!f) return "";
    if (this.gaveUp) {
      return `gave up after ${this.startFailures} failed starts in a row (limits.maxConstructorRetries): ${f.message}. Fix the code or config and deploy again, or PATCH the deployment to retry`;
    }
    const waitS = this.backoffS(now);
    if (this.status(now) !== "UNHEALTHY") return waitS > 0 ? `${f.message}; restarting in ${waitS.toFixed(1)} s` : "";
    const worst = Math.max(this.startFailures, ...this.#crashLooping(now));
    return `${f.message}; ${worst} failures in a row${waitS > 0 ? `, next restart in ${waitS.toFixed(1)} s` : ""}`;
  }
}

/** Scale-down order: starting replicas first (nothing to drain), then the least busy. */
function startingFirst(a: ReplicaView, b: ReplicaView): number {
  const rank = (r: ReplicaView) => (r.state === "STARTING" ? 0 : 1);
  return rank(a) - rank(b) || a.ongoing - b.ongoing;
}
