/**
 * The replica limits of a target config (SPEC §8): pure, so a config file, a
 * PUT, a PATCH and the code's own options are all checked the same way before
 * anything starts.
 */
import { ServeError, type Issue } from "../error.ts";
import type { DeploymentConfig, LimitsConfig } from "./schema.ts";

/** The most replicas a deployment may run under its config: numReplicas, or its autoscaler's ceiling (none when colocated). */
export function replicaCeiling(d: Pick<DeploymentConfig, "numReplicas" | "autoscalingConfig" | "colocate">): number {
  if (d.colocate) return 0;
  const fixed = typeof d.numReplicas === "number" ? d.numReplicas : 0;
  return Math.max(fixed, d.autoscalingConfig?.maxReplicas ?? 0);
}

/** One application as the limit check sees it: its name and resolved deployments. */
export interface LimitedApp {
  name: string;
  deployments: readonly Pick<DeploymentConfig, "name" | "numReplicas" | "autoscalingConfig" | "colocate">[];
}

const RAISE = "raise it in the config's limits section (PUT /api/applications or serve-bin deploy), or ask for fewer";

/**
 * Issues for every deployment over `maxReplicasPerDeployment`, and one for the
 * sum over `maxReplicas`; empty when the config fits.
 *
 * @example checkLimits([{ name: "default", deployments: [{ name: "Model", numReplicas: 1e9 }] }], limits)
 * // [{ path: ["applications", "default", "deployments", "Model", "numReplicas"], message: "asks for 1000000000 replicas; limits.maxReplicasPerDeployment is 64: …" }]
 */
export function checkLimits(apps: readonly LimitedApp[], limits: LimitsConfig): Issue[] {
  const issues: Issue[] = [];
  let total = 0;
  for (const app of apps) {
    for (const d of app.deployments) {
      const n = replicaCeiling(d);
      total += n;
      if (n > limits.maxReplicasPerDeployment) {
        const field = typeof d.numReplicas === "number" && d.numReplicas === n ? "numReplicas" : "autoscalingConfig";
        issues.push({
          path: ["applications", app.name, "deployments", d.name, field],
          message: `${app.name}/${d.name} asks for ${n} replicas; limits.maxReplicasPerDeployment is ${limits.maxReplicasPerDeployment}: ${RAISE}`,
        });
      }
    }
  }
  if (total > limits.maxReplicas) {
    issues.push({
      path: ["limits", "maxReplicas"],
      message: `all applications together ask for ${total} replicas; limits.maxReplicas is ${limits.maxReplicas}: ${RAISE}`,
    });
  }
  return issues;
}

/** Throws 422 naming each limit passed; nothing has changed when it does. */
export function assertWithinLimits(apps: readonly LimitedApp[], limits: LimitsConfig): void {
  const issues = checkLimits(apps, limits);
  if (issues.length) throw new ServeError("invalid", `refused, nothing was changed: ${issues.map((i) => i.message).join("; ")}`, { issues });
}
