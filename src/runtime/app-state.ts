import type { SerializedServeError } from "../error.ts";
import type { DeploymentConfig } from "../config/schema.ts";
import type { AutoscaleState } from "./autoscale.ts";
import type { PlannedApp } from "./plan-app.ts";
import type { RemoteInvoker } from "./remote-invoker.ts";
import type { ReplicaRecord } from "./replica-state.ts";

/**
 * The state the controller holds for each application and deployment, and
 * the Ray-style statuses derived from it. Pure: no process, no socket.
 */
export type AppStatus = "DEPLOYING" | "RUNNING" | "DEPLOY_FAILED" | "UNHEALTHY" | "DELETING";
export type DeploymentStatus = "UPDATING" | "HEALTHY" | "UNHEALTHY";

/** Consecutive start failures after which a deployment is UNHEALTHY (and a new app DEPLOY_FAILED). */
export const MAX_START_FAILURES = 3;

export interface ControllerEvent {
  app: string;
  deployment?: string;
  replica?: string;
  kind: "replica-starting" | "replica-running" | "replica-failed" | "replica-died" | "replica-replaced" | "replica-stopped" | "app-status";
  message?: string;
  /** The user's stack, for a replica that failed to start. */
  stack?: string;
}

/** One deployment as the controller holds it: its target config and its replicas. */
export interface DeploymentRuntime {
  name: string;
  config: DeploymentConfig;
  version: string;
  replicas: ReplicaRecord[];
  userConfigGen: number;
  failures: number;
  lastError: SerializedServeError | null;
  nextStartAt: number;
  /** Ids and restart counts of replicas that died, for their replacements. */
  deadSlots: { id: string; restarts: number }[];
  nextIndex: number;
  autoscale: AutoscaleState;
  /** No longer in the application's graph: it stops once no replica of the old code is left to call it. */
  removed: boolean;
}

/** One application as the controller holds it. */
export interface AppRuntime {
  planned: PlannedApp;
  status: AppStatus;
  message: string;
  everRunning: boolean;
  deleting: boolean;
  deployments: Map<string, DeploymentRuntime>;
  invoker: RemoteInvoker;
  tableVersion: number;
  tableSig: string;
}

/** The status JSON of SPEC section 4. */
export interface StatusJSON {
  applications: Record<
    string,
    {
      status: AppStatus;
      message: string;
      routePrefix: string;
      deployments: Record<string, { status: DeploymentStatus; message: string; targetReplicas: number; replicas: { id: string; pid: number; state: string; restarts: number }[] }>;
    }
  >;
}

/** Replicas the deployment should have now: numReplicas, or the autoscaler's count within its bounds. */
export function targetReplicas(d: DeploymentRuntime): number {
  if (d.config.numReplicas !== "auto" && !d.config.autoscalingConfig) return d.config.numReplicas as number;
  const a = d.config.autoscalingConfig;
  if (!a) return 1;
  const wanted = d.autoscale.desired ?? (typeof d.config.numReplicas === "number" ? d.config.numReplicas : a.minReplicas);
  return Math.min(Math.max(wanted, a.minReplicas), a.maxReplicas);
}

/** HEALTHY when exactly the target number of current-code replicas run; UNHEALTHY when starts keep failing. */
export function deploymentStatus(d: DeploymentRuntime): DeploymentStatus {
  if (d.failures >= MAX_START_FAILURES) return "UNHEALTHY";
  const target = targetReplicas(d);
  const live = d.replicas.filter((r) => r.state !== "STOPPING");
  const ready = live.filter((r) => r.state === "RUNNING" && r.version === d.version).length;
  return ready === target && live.length === target ? "HEALTHY" : "UPDATING";
}

/** The application's status and message, from its deployments'. */
export function appStatus(app: AppRuntime): { status: AppStatus; message: string } {
  if (app.deleting) return { status: "DELETING", message: app.message };
  const statuses = [...app.deployments.values()].map(deploymentStatus);
  const failing = [...app.deployments.values()].find((d) => d.failures >= MAX_START_FAILURES);
  if (statuses.every((s) => s === "HEALTHY")) return { status: "RUNNING", message: app.message.startsWith("reconfigure") ? app.message : "" };
  if (failing) {
    return {
      status: app.everRunning ? "UNHEALTHY" : "DEPLOY_FAILED",
      message: `deployment ${failing.name} failed to start: ${failing.lastError?.message ?? "unknown error"}`,
    };
  }
  return { status: statuses.includes("UNHEALTHY") ? "UNHEALTHY" : "DEPLOYING", message: app.message };
}

/** The status JSON of the admin API. */
export function statusJSON(apps: ReadonlyMap<string, AppRuntime>): StatusJSON {
  const applications: StatusJSON["applications"] = {};
  for (const [name, app] of apps) {
    const deployments: StatusJSON["applications"][string]["deployments"] = {};
    for (const d of app.deployments.values()) {
      deployments[d.name] = {
        status: deploymentStatus(d),
        message: d.lastError ? d.lastError.message : "",
        targetReplicas: targetReplicas(d),
        replicas: d.replicas.map((r) => ({ id: r.id, pid: r.proc.pid, state: r.state, restarts: r.restarts })),
      };
    }
    applications[name] = { status: app.status, message: app.message, routePrefix: app.planned.config.routePrefix, deployments };
  }
  return { applications };
}
