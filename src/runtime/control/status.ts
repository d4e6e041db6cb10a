import type { DeploymentState, ReplicaView } from "./deployment-state.ts";
import { UNHEALTHY_AFTER_START_FAILURES } from "./deployment-state.ts";

/**
 * Ray's status names and the status JSON of SPEC §4, derived from the state
 * machines. Pure: no process, no socket.
 */
export type AppStatus = "DEPLOYING" | "RUNNING" | "DEPLOY_FAILED" | "UNHEALTHY" | "DELETING";
export type DeploymentStatus = "UPDATING" | "HEALTHY" | "UNHEALTHY";

export const APP_STATES: readonly AppStatus[] = ["DEPLOYING", "RUNNING", "DEPLOY_FAILED", "UNHEALTHY", "DELETING"];
export const REPLICA_STATES = ["STARTING", "UPDATING", "RUNNING", "STOPPING"] as const;

/** What the controller reports as it goes; `serve-bin run` prints these. */
export interface ControllerEvent {
  app: string;
  deployment?: string;
  replica?: string;
  kind: "replica-starting" | "replica-running" | "replica-failed" | "replica-died" | "replica-replaced" | "replica-stopped" | "app-status";
  message?: string;
  /** The user's stack, for a replica that failed to start. */
  stack?: string;
}

/** An application's state as the status functions read it. */
export interface AppView {
  name: string;
  routePrefix: string;
  deleting: boolean;
  everRunning: boolean;
  /** What the last refused change said (a reconfigure rolled back), until the next change. */
  note: string;
  deployments: ReadonlyMap<string, DeploymentState>;
}

export interface ReplicaStatusJSON {
  id: string;
  pid: number;
  state: string;
  restarts: number;
}

export interface DeploymentStatusJSON {
  status: DeploymentStatus;
  /** Why it is not healthy: the user's error or how the replica ended, failures in a row, the next restart. */
  message: string;
  targetReplicas: number;
  replicas: ReplicaStatusJSON[];
  /** Restarts of all its replicas since it was deployed. */
  restarts: number;
  /** Seconds until the next restart of a replica in backoff (0: none waits). */
  backoffS: number;
}

/** The status JSON of SPEC section 4. */
export interface StatusJSON {
  applications: Record<string, { status: AppStatus; message: string; routePrefix: string; deployments: Record<string, DeploymentStatusJSON> }>;
}

/** The application's status and message, from its deployments'. */
export function appStatus(app: AppView, now: number): { status: AppStatus; message: string } {
  if (app.deleting) return { status: "DELETING", message: app.note };
  const deps = [...app.deployments.values()];
  const statuses = deps.map((d) => d.status(now));
  if (statuses.every((s) => s === "HEALTHY")) return { status: "RUNNING", message: app.note };
  const failing = deps.find((d) => d.gaveUp || d.startFailures >= UNHEALTHY_AFTER_START_FAILURES);
  if (failing && !app.everRunning) return { status: "DEPLOY_FAILED", message: `deployment ${failing.name} failed to start: ${failing.message(now)}` };
  const sick = deps.find((d) => d.status(now) === "UNHEALTHY");
  if (sick) return { status: "UNHEALTHY", message: `deployment ${sick.name}: ${sick.message(now)}` };
  return { status: "DEPLOYING", message: app.note };
}

/** The status JSON of the admin API. `pid` gives a replica's process id. */
export function statusJSON(apps: Iterable<AppView & { status: AppStatus; message: string }>, pid: (r: ReplicaView) => number, now: number): StatusJSON {
  const applications: StatusJSON["applications"] = {};
  for (const app of apps) {
    const deployments: Record<string, DeploymentStatusJSON> = {};
    for (const d of app.deployments.values()) {
      deployments[d.name] = {
        status: d.status(now),
        message: d.message(now),
        targetReplicas: d.target(),
        replicas: [...d.replicas.values()].map((r) => ({ id: r.id, pid: pid(r), state: r.state, restarts: r.restarts })),
        restarts: d.restartsTotal,
        backoffS: Math.round(d.backoffS(now) * 10) / 10,
      };
    }
    applications[app.name] = { status: app.status, message: app.message, routePrefix: app.routePrefix, deployments };
  }
  return { applications };
}
