/**
 * Offline checks of Kubernetes manifests for the tests: schema validation with
 * kubernetes-models (the OpenAPI schemas of Kubernetes 1.30, no server), and
 * lints no schema expresses. Each lint returns what is wrong, as sentences.
 */
import * as appsV1 from "kubernetes-models/apps/v1";
import * as autoscalingV2 from "kubernetes-models/autoscaling/v2";
import * as coordinationV1 from "kubernetes-models/coordination.k8s.io/v1";
import * as networkingV1 from "kubernetes-models/networking.k8s.io/v1";
import * as rbacV1 from "kubernetes-models/rbac.authorization.k8s.io/v1";
import * as coreV1 from "kubernetes-models/v1";

type Obj = Record<string, any>;

const MODELS: Record<string, Record<string, unknown>> = {
  "apps/v1": appsV1,
  "autoscaling/v2": autoscalingV2,
  "coordination.k8s.io/v1": coordinationV1,
  "networking.k8s.io/v1": networkingV1,
  "rbac.authorization.k8s.io/v1": rbacV1,
  v1: coreV1,
};

/** Validates one object against its kind's schema; returns the error message, or null when it is valid. */
export function schemaError(o: Obj): string | null {
  const Model = MODELS[o.apiVersion]?.[o.kind] as (new (data: Obj) => { validate(): void }) | undefined;
  if (!Model) return `${o.apiVersion} ${o.kind} has no schema here`;
  try {
    new Model(o).validate();
    return null;
  } catch (e) {
    return `${o.kind} ${o.metadata?.name}: ${(e as Error).message}`;
  }
}

/** The verbs the controller's Role may hold, by resource: exactly these (issue 13). */
export const CONTROLLER_VERBS: Record<string, string[]> = {
  "discovery.k8s.io/endpointslices": ["list", "watch"],
  "/pods": ["list", "watch", "patch"],
  "apps/deployments/scale": ["get", "patch"],
  "/configmaps": ["get", "update"],
  "coordination.k8s.io/leases": ["get", "update"],
};

const verbList = (m: Record<string, string[]>) => JSON.stringify(Object.keys(m).sort().map((k) => [k, [...m[k]!].sort()]));

/** What is wrong with a set of objects, as one sentence each (empty when nothing is). */
export function lint(objects: Obj[]): string[] {
  const problems: string[] = [];
  const hpaTargets = new Set(objects.filter((o) => o.kind === "HorizontalPodAutoscaler").map((o) => o.spec.scaleTargetRef.name));
  for (const o of objects) {
    const id = `${o.kind} ${o.metadata?.name}`;
    if (o.kind === "Deployment") {
      const labels = o.spec.template.metadata?.labels ?? {};
      for (const [k, v] of Object.entries(o.spec.selector.matchLabels ?? {})) if (labels[k] !== v) problems.push(`${id}: selector ${k}=${v} does not match the pod template's labels`);
      const pod = o.spec.template.spec;
      if (typeof pod.terminationGracePeriodSeconds !== "number") problems.push(`${id}: no terminationGracePeriodSeconds`);
      for (const c of pod.containers) {
        for (const p of ["startupProbe", "livenessProbe", "readinessProbe"]) if (!c[p]) problems.push(`${id}: container ${c.name} has no ${p}`);
      }
      if (hpaTargets.has(o.metadata.name) && o.spec.replicas !== undefined) problems.push(`${id}: spec.replicas beside an HPA`);
      if (!o.spec.template.metadata?.annotations?.["serve-bin.dev/config-hash"]) problems.push(`${id}: no config hash on the pod template`);
    }
    if (o.kind === "Service" && o.spec.selector) {
      const pods = objects.filter((d) => d.kind === "Deployment" && Object.entries(o.spec.selector).every(([k, v]) => d.spec.template.metadata.labels?.[k] === v));
      if (pods.length !== 1) problems.push(`${id}: selector matches ${pods.length} Deployments' pods, not 1`);
    }
    if (o.kind === "Role") {
      const seen: Record<string, string[]> = {};
      for (const r of o.rules) for (const g of r.apiGroups) for (const res of r.resources) seen[`${g}/${res}`] = [...(seen[`${g}/${res}`] ?? []), ...r.verbs];
      if (verbList(seen) !== verbList(CONTROLLER_VERBS)) problems.push(`${id}: rules ${JSON.stringify(seen)} are not exactly ${JSON.stringify(CONTROLLER_VERBS)}`);
    }
  }
  return problems;
}
