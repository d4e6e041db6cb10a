import { ServeError, type SerializedServeError } from "../../error.ts";
import type { DeploymentState, ReplicaView } from "./deployment-state.ts";
import type { ReplicaControl } from "./replica-control.ts";

/** What the userConfig transaction needs from the loop. */
export interface ReconfigureScope {
  readonly deployment: DeploymentState;
  /** The control of a replica, while its process lives. */
  control(view: ReplicaView): ReplicaControl | undefined;
  /** Replaces a replica that could not go back to the previous userConfig. */
  replace(view: ReplicaView, why: string): void;
  /** Something visible changed (states, target): refresh status and reconcile. */
  changed(): void;
  /** The change was refused and rolled back: what the application's status says until the next change. */
  refused(note: string): void;
}

/**
 * Sets a deployment's userConfig and runs `reconfigure()` on each serving
 * replica of the current code, all or nothing. The target changes first, so
 * a replica that starts meanwhile gets the new one. If any replica throws,
 * the target goes back and every serving replica is sent the previous
 * userConfig — the one that threw too, since it may have changed part of its
 * state before throwing; a replica that cannot go back is replaced. Throws
 * the user's error then.
 */
export async function changeUserConfig(scope: ReconfigureScope, userConfig: unknown): Promise<void> {
  const d = scope.deployment;
  const previous = d.config.userConfig;
  d.config = { ...d.config, userConfig };
  const gen = ++d.userConfigGen;
  const live = servingCurrent(d);
  const timeoutMs = (d.config.healthCheckTimeoutS + 30) * 1000;
  const results = await Promise.all(live.map((r) => reconfigureOne(scope, r, userConfig, gen, timeoutMs)));
  const failed = results.findIndex((e) => e !== undefined);
  if (failed < 0) return scope.changed();
  d.config = { ...d.config, userConfig: previous };
  const back = ++d.userConfigGen;
  const serving = servingCurrent(d);
  const undone = await Promise.all(serving.map((r) => reconfigureOne(scope, r, previous, back, 30_000)));
  serving.forEach((r, i) => undone[i] && scope.replace(r, `it could not go back to the previous userConfig: ${undone[i]!.message}`));
  const err = results[failed]!;
  scope.refused(`reconfigure of ${d.name} failed on replica ${live[failed]!.id} and was rolled back: ${err.message}`);
  scope.changed();
  throw new ServeError("user", `reconfigure() of ${d.name} failed on replica ${live[failed]!.id}; the change was rolled back on every replica: ${err.message}`, {
    deployment: d.name,
    causeName: err.causeName,
    causeStack: err.stack,
  });
}

/** Brings a replica that started before a userConfig change to the current one; replaces it if it refuses. */
export async function catchUp(scope: ReconfigureScope, r: ReplicaView): Promise<void> {
  const d = scope.deployment;
  while (r.state !== "STOPPING" && d.replicas.has(r.key) && r.userConfigGen !== d.userConfigGen) {
    const err = await reconfigureOne(scope, r, d.config.userConfig, d.userConfigGen, 60_000);
    if (err) return scope.replace(r, `reconfigure failed: ${err.message}`);
  }
  scope.changed();
}

function servingCurrent(d: DeploymentState): ReplicaView[] {
  return d.serving().filter((r) => r.version === d.version);
}

/** One replica's reconfigure(): UPDATING meanwhile; records the generation it now runs. */
async function reconfigureOne(scope: ReconfigureScope, r: ReplicaView, userConfig: unknown, gen: number, timeoutMs: number): Promise<SerializedServeError | undefined> {
  const control = scope.control(r);
  if (!control) return { code: "unavailable", message: `replica ${r.id} exited` };
  const d = scope.deployment;
  if (r.state === "RUNNING") d.to(r.key, "UPDATING");
  scope.changed();
  const err = await control.reconfigure(userConfig, timeoutMs);
  if (!err) r.userConfigGen = gen;
  if (r.state === "UPDATING") d.to(r.key, "RUNNING");
  return err;
}
