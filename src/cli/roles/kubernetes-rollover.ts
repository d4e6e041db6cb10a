/**
 * Upgrades on Kubernetes, as the controller runs them: each deployment moved
 * off the previous revisions that revisions.json lists, one pod at a time,
 * every ROLLOVER_MS, deciding with `rolloverStep` (cluster/kubernetes/
 * rollout.ts). An old pod goes (its Deployment lowered by one; Kubernetes
 * sends it SIGTERM, it drains) when a new-revision pod is linked and
 * unclaimed and every claim serves, so the claim it leaves is taken at once,
 * or when claims starve for room; the current revision is capped one pod
 * above what the old ones leave. Old revisions of other code serve nothing
 * here and go at once.
 */
import type { DeploymentConfig } from "../../config/schema.ts";
import type { KubeClient } from "../../cluster/kubernetes/client.ts";
import type { KubernetesEngine } from "../../cluster/kubernetes/engine.ts";
import { rolloverStep } from "../../cluster/kubernetes/rollout.ts";
import { PREVIOUS_SUFFIX } from "../../cluster/kubernetes/names.ts";
import type { RemoteEngine } from "../../cluster/remote-engine.ts";
import type { Server } from "../../http/server.ts";

/** How often a rollover from previous revisions takes its next step. */
const ROLLOVER_MS = 500;

export interface RolloverOptions {
  engine: KubernetesEngine;
  client: KubeClient;
  server: Server;
  remote: RemoteEngine;
  /** Whether a pod of this revision may take a claim (same code as the current revision). */
  eligible: (app: string, deployment: string, revision: string | undefined) => boolean;
  /** Deployments left alone (an HPA owns their count, or the weighted rollout moves them). */
  skip: (app: string, d: DeploymentConfig) => boolean;
  log: (line: string) => void;
}

/** Runs until `stop()`. */
export class Rollover {
  /** Per deployment: since when claims wait with no pod, the linked count when an old pod was last let go, and whether it is over. */
  readonly #rolling = new Map<string, { starvedSince: number; linkedAtLower: number | null; done: boolean }>();
  #stepping = false;
  readonly #timer: ReturnType<typeof setInterval>;

  constructor(readonly o: RolloverOptions) {
    this.#timer = setInterval(() => void this.#step(), ROLLOVER_MS);
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /**
   * Moves each deployment off its previous revisions (revisions.json) one pod
   * at a time (rollout.ts `rolloverStep`): an old pod goes when a new one is
   * connected and waiting, or when claims starve for room; the current
   * revision is capped one above what the old ones leave.
   */
  async #step(): Promise<void> {
    if (this.#stepping) return;
    this.#stepping = true;
    try {
      const status = this.o.server.status();
      for (const app of this.o.server.appliedConfig().applications) {
        if (app.name.endsWith(PREVIOUS_SUFFIX)) continue; // a rollout's previous variant: its pods are the previous revisions
        for (const d of app.deployments) {
          const previous = this.o.engine.previousOf(app.name, d.name);
          const key = `${app.name}/${d.name}`;
          const state = this.#rolling.get(key) ?? { starvedSince: 0, linkedAtLower: null, done: false };
          this.#rolling.set(key, state);
          if (!previous.length || state.done || this.o.skip(app.name, d)) continue;
          const counts = await Promise.all(previous.map((name) => this.o.client.getScale(name).then((s) => ({ name, replicas: s.spec.replicas ?? 0 }), () => ({ name, replicas: 0 }))));
          const old = counts.reduce((n, c) => n + c.replicas, 0);
          const ds = status.applications[app.name]?.deployments[d.name];
          const target = ds?.targetReplicas ?? 0;
          const running = ds?.replicas.filter((r) => r.state === "RUNNING").length ?? 0;
          const { linked, idle } = this.o.remote.linkedOf(app.name, d.name);
          const now = performance.now();
          if (running < target && idle === 0) state.starvedSince ||= now;
          else state.starvedSince = 0;
          // The old pod let go last must have left before the next goes.
          if (state.linkedAtLower !== null && linked >= state.linkedAtLower) continue;
          state.linkedAtLower = null;
          const oldServes = previous.every((p) => this.o.eligible(app.name, d.name, p.slice(this.o.engine.kubeName(app.name, d.name).length + 1)));
          const step = rolloverStep({ target, running, idle, old, starvedMs: state.starvedSince ? now - state.starvedSince : 0, oldServes });
          this.o.engine.setCap(app.name, d.name, old === 0 ? undefined : step.cap);
          if (old === 0) {
            state.done = true;
            this.o.log(`serve-bin: ${key} runs on its current revision ${this.o.engine.deploymentName(app.name, d.name)} only`);
            continue;
          }
          if (!step.lowerOld) continue;
          if (!oldServes) {
            for (const c of counts) if (c.replicas > 0) await this.o.client.scale(c.name, 0, "exactly");
            state.done = true;
            this.o.engine.setCap(app.name, d.name, undefined);
            this.o.log(`serve-bin: ${key}: previous revisions run other code and can serve nothing here; down to 0 (${counts.map((c) => c.name).join(", ")})`);
            continue;
          }
          const from = counts.find((c) => c.replicas > 0)!;
          await this.o.client.scale(from.name, from.replicas - 1, "exactly");
          state.linkedAtLower = linked;
          state.starvedSince = 0;
          this.o.log(`serve-bin: ${key}: previous revision ${from.name} down to ${from.replicas - 1} (${idle} new pod${idle === 1 ? "" : "s"} waiting)`);
        }
      }
    } catch (e) {
      this.o.log(`serve-bin: rollover step failed (will try again): ${(e as Error).message}`);
    } finally {
      this.#stepping = false;
    }
  }
}
