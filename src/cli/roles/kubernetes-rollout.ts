/**
 * Code upgrades on Kubernetes with traffic moved in steps: when a build
 * changes an application's code, the controller (which runs the new code's
 * image) serves the previous code beside it, as an application of its own
 * named `<app>~previous`, planned from the previous revision's graph that the
 * build kept (ConfigMap `plans.json`). Its claims take the previous
 * revisions' pods (RemoteEngine's `appOf`); its counts are the previous
 * Deployments'. The application's route becomes a weighted split between the
 * two, and every ROLLOUT_MS `rolloutStep` (cluster/kubernetes/rollout.ts)
 * moves each deployment one pod: the current revision is raised (at most one
 * pod above the target of the two together), the previous one lowered once
 * the new pod is ready (a PATCH of the variant's numReplicas: the controller
 * drains the replica, then its Deployment goes down; a deployment behind
 * the previous ingress keeps a pod until the ingress's last one drained,
 * `leavingCount`). The split's weights
 * follow the ready pods: each side gets the smallest share any of its
 * deployments has, so neither side's graph is sent more than its thinnest
 * deployment serves. When every deployment runs on the current revision
 * alone, the variant and the split go. A rollback (POST
 * /api/applications/<app>/rollback) runs the same steps the other way: the
 * weights move back and the current revision goes down to one idle pod
 * (so the application stays ready); applying the previous build makes it final.
 */
import type { ApplicationConfig, RouteConfig } from "../../config/schema.ts";
import { ServeError } from "../../error.ts";
import type { KubeClient } from "../../cluster/kubernetes/client.ts";
import type { KubernetesEngine } from "../../cluster/kubernetes/engine.ts";
import { PREVIOUS_SUFFIX, type Revisions, type StoredPlans } from "../../cluster/kubernetes/names.ts";
import { leavingCount, rolloutStep } from "../../cluster/kubernetes/rollout.ts";
import { replan, type PlannedApp } from "../../runtime/plan-app.ts";
import type { Server } from "../../http/server.ts";

/** How often a rollout takes its next step. */
const ROLLOUT_MS = 500;
/** How often an application not yet looked at is looked at (its variant must exist before its new pods take traffic). */
const LOOK_MS = 100;

/** A rollout's state, as `GET /api/applications` shows it under the application. */
export interface RolloutStatus {
  /** The application serving the previous code. */
  previous: string;
  direction: "forward" | "back";
  /** Percent of the route to each side. */
  weights: { current: number; previous: number };
  /** Per deployment: pods asked for and replicas running, on each side. */
  deployments: Record<string, { current: { replicas: number; ready: number }; previous: { replicas: number; ready: number } }>;
  /** `rolled back`: every request goes to the previous code; apply the previous build to make it final. */
  state: "moving" | "rolled back";
}

interface Moving {
  app: string;
  variant: string;
  prefix: string;
  /** Each deployment's pods on the previous side when the rollout began: where a rollback returns to. */
  oldTargets: Map<string, number>;
  /** The previous code's ingress deployment: the one its requests enter by. */
  ingress: string;
  /** Each deployment's pods asked for on the current side. */
  caps: Map<string, number>;
  status: RolloutStatus;
  /** When it began, and whether the previous side has served yet (every deployment with its replicas running). */
  began: number;
  oldUp: boolean;
}

/**
 * How long the first step waits for the previous side to serve (its pods are
 * re-claimed by a restarted controller): weights follow ready pods, so a new
 * pod ready first would otherwise take the whole route at once. Past this,
 * the previous code is taken not to come back, and the rollout moves on.
 */
const OLD_UP_WAIT_MS = 30_000;

export interface WeightedRolloutOptions {
  engine: KubernetesEngine;
  client: KubeClient;
  revisions: Revisions;
  plans: StoredPlans;
  /** Deployments left alone (an HPA owns their count). */
  skip: (app: string, deployment: string) => boolean;
  log: (line: string) => void;
}

/** Runs until `stop()`. */
export class WeightedRollout {
  readonly #moving = new Map<string, Moving>();
  /** Applications looked at: moving, or with nothing to move (or that could not be). */
  readonly #seen = new Set<string>();
  readonly #given = new Set<string>();
  #busy = false;
  #stepping = false;
  /** Applications whose rollout ended: the pod-by-pod rollover keeps out (their previous revisions are at 0). */
  readonly #finished = new Set<string>();
  #timers: ReturnType<typeof setInterval>[] = [];
  #server: Server | null = null;

  /** Made before the control links listen (replicas are told apart by `appOf` from their first hello); `start` once the server runs. */
  constructor(readonly o: WeightedRolloutOptions) {}

  start(server: Server): void {
    this.#server = server;
    this.#timers = [setInterval(() => void this.#look(), LOOK_MS), setInterval(() => void this.#stepAll(), ROLLOUT_MS)];
  }

  stop(): void {
    for (const t of this.#timers) clearInterval(t);
  }

  /** The previous revision's Deployment of one deployment whose code differs from the current one's and whose plan the build kept, if any. */
  #previousOf(app: string, deployment: string): { name: string; code: string } | undefined {
    const r = this.o.revisions[this.o.engine.kubeName(app, deployment)];
    const now = r?.code?.[r.current];
    if (!r || now === undefined) return undefined;
    for (const name of r.previous) {
      const code = r.code?.[name];
      if (code !== undefined && code !== now && this.o.plans[code]) return { name, code };
    }
    return undefined;
  }

  /** Whether this rollout moves the deployment (the pod-by-pod rollover leaves it alone). */
  owns(app: string, deployment: string): boolean {
    return (this.#finished.has(app) || !this.#given.has(app)) && !app.endsWith(PREVIOUS_SUFFIX) && this.#previousOf(app, deployment) !== undefined;
  }

  /** The application a replica's claims come from: a pod of a previous revision this rollout serves belongs to the variant. */
  appOf = (app: string, deployment: string, revision: string | undefined): string => {
    if (!revision || this.#given.has(app)) return app;
    const prev = this.#previousOf(app, deployment);
    return prev && prev.name === `${this.o.engine.kubeName(app, deployment)}-${revision}` ? app + PREVIOUS_SUFFIX : app;
  };

  /** Whether the application is a rollout's previous variant (given only the previous revisions' pods). */
  isVariant(app: string): boolean {
    return app.endsWith(PREVIOUS_SUFFIX) && this.#moving.has(app.slice(0, -PREVIOUS_SUFFIX.length));
  }

  /**
   * Whether every planned application has been looked at (its rollout begun,
   * or nothing to move): until then a code change's new code would take its
   * route alone, before the split is in place, so proxies are not given it.
   */
  decided(): boolean {
    if (!this.#server || this.#busy) return false;
    const { config, plans } = this.#server.changes.current;
    return config.applications.every((a) => a.name.endsWith(PREVIOUS_SUFFIX) || !plans.has(a.name) || this.#seen.has(a.name));
  }

  /** The rollout of each application moving, for its status. */
  statusOf(app: string): RolloutStatus | undefined {
    return this.#moving.get(app)?.status;
  }

  /** Moves the weights back to the previous code (the admin API's POST …/rollback). */
  async rollback(app: string): Promise<void> {
    const m = this.#moving.get(app);
    if (!m && !this.#server!.changes.current.plans.has(app)) throw new ServeError("not_found", `no application "${app}"; applications: ${[...this.#server!.changes.current.plans.keys()].join(", ") || "(none)"}`);
    if (!m) throw new ServeError("conflict", `application ${app} has no rollout in progress to move back${this.#seen.has(app) ? " (it runs on its current revision alone)" : ""}; to go back now, apply the previous build (kubectl apply -k with its manifests)`);
    if (m.status.direction === "back") return;
    m.status.direction = "back";
    this.o.log(`serve-bin: ${app}: rolling back to ${m.variant}`);
  }

  /** Starts a rollout for each application whose previous revisions run other code with a kept plan. */
  async #look(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    try {
      const current = this.#server!.changes.current;
      for (const a of current.config.applications) {
        if (this.#seen.has(a.name) || a.name.endsWith(PREVIOUS_SUFFIX)) continue;
        const plan = current.plans.get(a.name);
        if (!plan) continue;
        this.#seen.add(a.name);
        await this.#begin(a, plan).catch((e) => {
          this.#given.add(a.name);
          this.o.log(`serve-bin: ${a.name}: no weighted rollout (${(e as Error).message}); previous revisions are replaced pod by pod`);
        });
      }
    } finally {
      this.#busy = false;
    }
  }

  async #begin(app: ApplicationConfig, plan: PlannedApp): Promise<void> {
    const ingressPrev = this.#previousOf(app.name, plan.graph.ingress);
    if (!ingressPrev) return; // nothing of other code to move from
    const stored = this.o.plans[ingressPrev.code]!;
    if (this.#server!.changes.current.config.routes.some((r) => r.routePrefix === plan.config.routePrefix || app.name in r.split))
      throw new Error(`its route ${plan.config.routePrefix} is already a split`);
    const variant = app.name + PREVIOUS_SUFFIX;
    const deployments: Record<string, string> = {};
    const oldTargets = new Map<string, number>();
    for (const d of stored.graph.deployments) {
      const prev = this.#previousOf(app.name, d.name);
      if (!prev || prev.code !== ingressPrev.code) throw new Error(`deployment ${d.name} of the previous code has no previous Deployment`);
      if (this.o.skip(app.name, d.name)) throw new Error(`an HPA owns the count of ${d.name}`);
      deployments[d.name] = prev.name;
      oldTargets.set(d.name, (await this.o.client.getScale(prev.name)).spec.replicas ?? 0);
    }
    if (!oldTargets.get(stored.graph.ingress)) throw new Error("the previous revision runs no ingress pod");
    this.o.engine.setVariant(variant, app.name, deployments);
    const shell = { ...stored, config: plan.config, codeVersion: "" } as PlannedApp;
    const entry: ApplicationConfig = { name: variant, importPath: app.importPath, routePrefix: plan.config.routePrefix, deployments: [...oldTargets].map(([name, n]) => ({ name, numReplicas: n })) } as ApplicationConfig;
    const previous = replan(shell, entry);
    const m: Moving = {
      app: app.name,
      variant,
      prefix: plan.config.routePrefix,
      oldTargets,
      ingress: stored.graph.ingress,
      caps: new Map(plan.config.deployments.map((d) => [d.name, 1])),
      status: { previous: variant, direction: "forward", weights: { current: 0, previous: 100 }, deployments: {}, state: "moving" },
      began: performance.now(),
      oldUp: false,
    };
    this.#moving.set(app.name, m);
    for (const d of m.caps.keys()) this.#server!.controller.setCeiling(app.name, d, 1);
    await this.#server!.changes.change((cur) => ({
      config: { ...cur.config, applications: [...cur.config.applications, entry], routes: [...cur.config.routes, this.#route(m)] },
      plans: new Map([...cur.plans, [variant, previous]]),
    }));
    this.o.log(`serve-bin: ${app.name}: rolling out the new code; the previous code serves as ${variant} (${Object.values(deployments).join(", ")}) until the new revision takes over`);
  }

  #route(m: Moving): RouteConfig {
    return { routePrefix: m.prefix, split: { [m.app]: m.status.weights.current, [m.variant]: m.status.weights.previous } } as RouteConfig;
  }

  async #stepAll(): Promise<void> {
    // One step at a time: a step reads counts that the one before may still be changing.
    if (this.#stepping) return;
    this.#stepping = true;
    try {
      for (const m of [...this.#moving.values()]) {
        await this.#step(m).catch((e) => this.o.log(`serve-bin: rollout step of ${m.app} failed (will try again): ${(e as Error).message}`));
      }
    } finally {
      this.#stepping = false;
    }
  }

  async #step(m: Moving): Promise<void> {
    const status = this.#server!.status().applications;
    const [next, old] = [status[m.app], status[m.variant]];
    const plans = this.#server!.changes.current.plans;
    if (!next || !old || !plans.has(m.variant)) return this.#end(m, `${m.variant} was removed`);
    const forward = m.status.direction === "forward";
    const running = (d: { replicas: { state: string }[] } | undefined) => d?.replicas.filter((r) => r.state === "RUNNING").length ?? 0;
    // The first step waits until the previous side serves (OLD_UP_WAIT_MS).
    m.oldUp ||= [...m.oldTargets].every(([d, n]) => running(old.deployments[d]) >= n) || performance.now() - m.began > OLD_UP_WAIT_MS;
    if (!m.oldUp) return;
    // The controller's target for each deployment (an autoscaled one's current count), above the rollout's ceiling.
    const states = this.#server!.controller.apps.get(m.app)?.deployments;
    const targets = new Map(plans.get(m.app)!.config.deployments.filter((d) => !d.colocate).map((d) => [d.name, states?.get(d.name)?.wanted() ?? 1]));
    const names = new Set([...targets.keys(), ...m.oldTargets.keys()]);
    const weights = { current: 100, previous: 100 };
    let done = true;
    const lower: [string, number][] = [];
    // Pods are counted as Kubernetes asks for them too: a count lowered by the controller reaches the Deployment only once its replica drained.
    const asked = async (app: string, d: string) => (await this.o.client.getScale(this.o.engine.deploymentName(app, d))).spec.replicas ?? 0;
    // The previous side's deployments behind its ingress keep a pod while an ingress pod runs (leavingCount).
    const ingressLeft = Math.max(old.deployments[m.ingress]?.targetReplicas ?? 0, await asked(m.variant, m.ingress));
    for (const d of names) {
      const oldNow = { replicas: m.oldTargets.has(d) ? Math.max(old.deployments[d]?.targetReplicas ?? 0, await asked(m.variant, d)) : 0, ready: running(old.deployments[d]) };
      const nextNow = { replicas: targets.has(d) ? Math.max(m.caps.get(d) ?? 1, await asked(m.app, d)) : 0, ready: running(next.deployments[d]) };
      const target = forward ? (targets.get(d) ?? 0) : (m.oldTargets.get(d) ?? 0);
      const step = rolloutStep({ target, old: oldNow, next: nextNow, direction: m.status.direction });
      // Back: the current revision keeps one idle pod, so the application stays ready; the previous build ends it.
      const nextCount = forward || !targets.has(d) ? step.next : Math.max(1, step.next);
      const oldCount = leavingCount({ deployment: d, ingress: m.ingress, ingressPods: ingressLeft, now: oldNow.replicas, step: step.old });
      m.status.deployments[d] = { current: { replicas: nextCount, ready: nextNow.ready }, previous: { replicas: oldCount, ready: oldNow.ready } };
      if (targets.has(d)) {
        weights.current = Math.min(weights.current, step.weights.next);
        if (nextCount !== nextNow.replicas) {
          m.caps.set(d, nextCount);
          // The controller holds its target there: a replica above it drains before its Deployment goes down (the claim's end lowers it).
          this.#server!.controller.setCeiling(m.app, d, nextCount);
          this.o.engine.setCap(m.app, d, nextCount);
        }
      }
      if (m.oldTargets.has(d)) weights.previous = Math.min(weights.previous, step.weights.old);
      if (oldCount !== oldNow.replicas && m.oldTargets.has(d)) lower.push([d, oldCount]);
      // Done once nothing is left to change: the step that lowers the last old pod is not the end (its count reaches the Deployment only after the replica drained, and the variant must still name that Deployment then).
      done &&= step.done && step.old === oldNow.replicas && nextCount === nextNow.replicas;
    }
    if (weights.current + weights.previous > 0 && (weights.current !== m.status.weights.current || weights.previous !== m.status.weights.previous)) {
      m.status.weights = weights;
      await this.#server!.changes.change((cur) => ({ config: { ...cur.config, routes: cur.config.routes.map((r) => (r.routePrefix === m.prefix ? this.#route(m) : r)) }, plans: cur.plans }));
      this.o.log(`serve-bin: ${m.app}: ${weights.current}% of ${m.prefix} to the current code, ${weights.previous}% to ${m.variant}`);
    }
    // The previous side's counts go through the controller: a lowered one drains its replica before the Deployment goes down.
    for (const [d, n] of lower) await this.#server!.patchDeployment(m.variant, d, { numReplicas: n }, false);
    if (forward && done) return this.#end(m, "every deployment runs on its current revision");
    if (!forward && done && m.status.state !== "rolled back") {
      m.status.state = "rolled back";
      this.o.log(`serve-bin: ${m.app}: rolled back; every request goes to ${m.variant}; apply the previous build to make it final`);
    }
  }

  /** The rollout is over: the variant and its split go, the current revision is uncapped. */
  async #end(m: Moving, why: string): Promise<void> {
    this.#moving.delete(m.app);
    await this.#server!.changes.change((cur) => ({
      config: { ...cur.config, applications: cur.config.applications.filter((a) => a.name !== m.variant), routes: cur.config.routes.filter((r) => r.routePrefix !== m.prefix || !(m.variant in r.split)) },
      plans: new Map([...cur.plans].filter(([n]) => n !== m.variant)),
    }));
    this.o.engine.setVariant(m.variant, m.app, null);
    for (const d of m.caps.keys()) {
      this.#server!.controller.setCeiling(m.app, d, undefined);
      this.o.engine.setCap(m.app, d, undefined);
    }
    this.#given.add(m.app);
    this.#finished.add(m.app);
    // What a restarted controller container comes back with: the application alone.
    this.#server!.persist();
    this.o.log(`serve-bin: ${m.app}: rollout done (${why}); ${m.variant} removed`);
  }
}
