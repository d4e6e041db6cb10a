/**
 * Names and labels shared by the manifests `serve-bin build --target
 * kubernetes` writes and the Kubernetes engine that acts on them: both must
 * arrive at the same object names from (application, deployment) alone, with
 * no lookup (the controller's Role may not list Deployments).
 */
import { createHash } from "node:crypto";
import type { GraphPlan } from "../../runtime/planner/graph-plan.ts";

/** Fixed names of the objects there is one of per build. */
export const KUBE_OBJECTS = {
  config: "serve-bin-config",
  token: "serve-bin-cluster-token",
  adminToken: "serve-bin-admin-token",
  controller: "serve-bin-controller",
  proxy: "serve-bin-proxy",
  lease: "serve-bin-controller",
  networkPolicy: "serve-bin-replicas",
} as const;

/** Label keys; every pod serve-bin makes carries PART_OF, its role and, for replicas, the Deployment's name. */
export const KUBE_LABELS = {
  partOf: "app.kubernetes.io/part-of",
  component: "app.kubernetes.io/component",
  name: "app.kubernetes.io/name",
  /** EndpointSlices name their Service with this label (set by Kubernetes). */
  serviceName: "kubernetes.io/service-name",
  /** A replica pod's code revision (`r` + 8 hex): its Deployment's selector has it, its Service's does not. */
  revision: "serve-bin.dev/revision",
} as const;

/** Annotation keys carrying serve-bin's own names, which may hold characters a label value cannot. */
export const KUBE_ANNOTATIONS = {
  app: "serve-bin.dev/app",
  deployment: "serve-bin.dev/deployment",
  configHash: "serve-bin.dev/config-hash",
} as const;

/** The value of `app.kubernetes.io/part-of` on everything serve-bin writes. */
export const PART_OF = "serve-bin";

/** Port of the replicas' TCP links. */
export const REPLICA_PORT = 7000;

/** Longest name kept before the hash; leaves room for the ReplicaSet and pod suffixes under 63. */
const SLUG_MAX = 40;

/**
 * The Kubernetes Deployment (and headless Service) name of a serve-bin
 * deployment: a readable slug plus six hex digits of a hash of the exact
 * names, so `Model` and `model`, or app `a-b`/`c` and `a`/`b-c`, never meet.
 * A DNS-1035 label: lowercase letters, digits and `-`, starting with a letter.
 * @example kubeDeploymentName("default", "Model_1") // "default-model-1-" + 6 hex digits
 */
export function kubeDeploymentName(app: string, deployment: string): string {
  const slug = `${app}-${deployment}`
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^[^a-z]+/, "")
    .slice(0, SLUG_MAX)
    .replace(/-+$/, "");
  const hash = createHash("sha256").update(`${app}/${deployment}`).digest("hex").slice(0, 6);
  return `${slug || "d"}-${hash}`;
}

/** The labels that select one deployment's replica pods (its Deployment's selector, its Service's selector). */
export function replicaSelector(kubeName: string): Record<string, string> {
  return { [KUBE_LABELS.partOf]: PART_OF, [KUBE_LABELS.component]: "replica", [KUBE_LABELS.name]: kubeName };
}

/** The label selector (query form) of every replica Service's EndpointSlices: one watch covers all deployments. */
export const REPLICA_SLICES_SELECTOR = `${KUBE_LABELS.partOf}=${PART_OF},${KUBE_LABELS.component}=replica`;

/**
 * A deployment's code revision: 8 hex digits of a hash of what its pods run
 * (the image, the application's code hash, the deployment's env). A change of
 * any of them makes a new revision, i.e. a new Deployment object beside the
 * old one, of the deployments it touches only.
 * @example kubeRevision(["me/graph:2", "a1b2.c3", { MODE: "fast" }]) // "r" + 8 hex digits
 */
export function kubeRevision(parts: unknown[]): string {
  return `r${createHash("sha256").update(JSON.stringify(parts)).digest("hex").slice(0, 8)}`;
}

/** The Deployment of one revision: `<kubeDeploymentName>-r<hash8>` (57 characters at most, a DNS label). */
export function revisionName(kubeName: string, revision: string): string {
  return `${kubeName}-${revision}`;
}

/** Each deployment's revisions, as `build` writes them (ConfigMap key `revisions.json`) and the controller reads them: by kubeDeploymentName. */
export type Revisions = Record<string, { current: string; previous: string[]; /** Each listed revision's code hash: a replica of a revision whose code is not the current one's is never claimed. */ code?: Record<string, string> }>;

/** The ConfigMap key (and build-directory file) holding the Revisions. */
export const REVISIONS_FILE = "revisions.json";

/** The ConfigMap key (and build-directory file) holding the StoredPlans. */
export const PLANS_FILE = "plans.json";

/**
 * Each listed revision's planned graph, by code hash (the `code` values of
 * Revisions): what the controller, which runs the new code's image, needs to
 * serve a previous revision's code beside the new one during a rollout.
 * `modulePath` is where that revision's image has the module.
 */
export type StoredPlans = Record<string, { modulePath: string; exportName: string; fileHash: string; graph: GraphPlan }>;

/** An application's previous code while a rollout moves traffic off it is served as this application: `<app>~previous`. */
export const PREVIOUS_SUFFIX = "~previous";
