import { ServeError } from "../../error.ts";
import { diffConfigs, type ConfigDiff } from "../../config/diff.ts";
import { assertWithinLimits } from "../../config/limits.ts";
import type { ResolvedApplicationConfig, ServeConfig } from "../../config/schema.ts";
import type { PlannedApp } from "../plan-app.ts";
import type { Controller } from "./controller.ts";

/** A whole target: the config as written (with every accepted change folded in) and each application's plan. */
export interface Target {
  readonly config: ServeConfig;
  readonly plans: ReadonlyMap<string, PlannedApp>;
}

/** The config with each application resolved as planned: what the diff compares. */
export type ResolvedTarget = Omit<ServeConfig, "applications"> & { applications: ResolvedApplicationConfig[] };

export function resolved(t: Target): ResolvedTarget {
  return { ...t.config, applications: t.config.applications.flatMap((a) => t.plans.get(a.name)?.config ?? []) };
}

export interface ChangeResult {
  diff: ConfigDiff;
  /** Resolves when removed applications have drained and stopped. */
  removed: Promise<void>;
}

/**
 * The one change path. Start-up, PUT, `serve-bin deploy`, PATCH of a
 * deployment or a route and DELETE all hand over a function from the current
 * target to the next; changes run one at a time. Each is checked against the
 * limits, classified by one diff (target only / reconfigure in place /
 * rolling restart / server restart), and carried out in one order:
 * userConfig in place first (all or nothing: a refusal changes nothing),
 * then the new targets. Only an accepted target becomes current and is
 * handed to `onAccepted` (routes rebuilt; the server persists it once it serves).
 */
export class ChangePath {
  #current: Target;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly controller: Controller,
    initial: ServeConfig,
    readonly onAccepted: (t: Target) => void,
  ) {
    this.#current = { config: initial, plans: new Map() };
  }

  /** The applied target: the one place the running config is held. */
  get current(): Target {
    return this.#current;
  }

  /** Computes the next target from the current one and applies it; serialised with every other change. */
  change(next: (current: Target) => Target | Promise<Target>): Promise<ChangeResult> {
    const run = this.#queue.then(async () => this.#apply(await next(this.#current)));
    this.#queue = run.catch(() => {});
    return run;
  }

  async #apply(next: Target): Promise<ChangeResult> {
    const before = resolved(this.#current);
    const after = resolved(next);
    assertWithinLimits(after.applications, next.config.limits);
    const diff = diffConfigs(before, after);
    await this.#reconfigureInPlace(diff, next);
    const c = this.controller;
    c.limits = next.config.limits;
    const removed = Promise.all(diff.removedApplications.filter((n) => c.apps.has(n)).map((n) => c.removeApp(n))).then(() => {});
    for (const plan of next.plans.values()) c.setApp(plan);
    this.#current = next;
    this.onAccepted(next);
    return { diff, removed };
  }

  /**
   * userConfig changes of deployments whose replicas stay (same code and env)
   * run `reconfigure()` before anything else changes; if one refuses, those
   * already changed go back and the whole change is refused.
   */
  async #reconfigureInPlace(diff: ConfigDiff, next: Target): Promise<void> {
    const done: { app: string; name: string; previous: unknown }[] = [];
    try {
      for (const app of diff.changedApplications) {
        if (app.restart) continue;
        const running = this.controller.apps.get(app.name);
        const plan = next.plans.get(app.name);
        if (!running || running.deleting || !plan || running.planned.codeVersion !== plan.codeVersion) continue;
        for (const dep of app.changedDeployments) {
          if (!dep.costs.has("reconfigure") || dep.costs.has("restart")) continue;
          const d = running.deployments.get(dep.name);
          const cfg = plan.config.deployments.find((x) => x.name === dep.name);
          if (!d || !cfg) continue;
          const previous = d.config.userConfig;
          await this.controller.changeUserConfig(app.name, dep.name, cfg.userConfig);
          done.push({ app: app.name, name: dep.name, previous });
        }
      }
    } catch (e) {
      for (const { app, name, previous } of done.reverse()) await this.controller.changeUserConfig(app, name, previous).catch(() => {});
      if (e instanceof ServeError) throw e;
      throw new ServeError("internal", `the change failed half-way and was rolled back: ${(e as Error).message}`);
    }
  }
}
