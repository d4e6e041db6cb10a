/**
 * `serve-bin build --target kubernetes`: the built config as plain Kubernetes
 * manifests plus a `kustomization.yaml` (SPEC §9), for `kubectl apply -k DIR`.
 * No operator and no CRD: a pure function from the config to typed objects
 * (kubernetes-types, so a misspelt field fails to compile); `build` writes
 * them as YAML files.
 *
 * What it writes (object names in src/cluster/kubernetes/names.ts):
 *   - ConfigMap `serve-bin-config` with `serve.yaml`; its sha256 is an
 *     annotation on every pod template, so a config change rolls the pods;
 *   - per serve deployment and code revision a Deployment `<name>-r<hash8>`
 *     (revision: the image, the application's code hash and the deployment's
 *     env; `revisions.json` in the ConfigMap names the current one and those
 *     before it, which the controller's Role may still scale) (the `replica` role, one pod per
 *     replica, grace period from gracefulShutdownTimeoutS, startup / liveness
 *     / readiness probes on `/-/healthz` and `/-/ready`, no API credentials)
 *     and a headless Service whose EndpointSlices the controller watches;
 *     `spec.replicas` only when the count is fixed and nothing else owns it;
 *   - with `--autoscaler hpa`, an autoscaling/v2 HPA per deployment on the
 *     per-pod `serve_bin_deployment_ongoing_requests` metric;
 *   - the proxy Deployment and Service (port 8000);
 *   - the controller: one replica (Recreate, plus a Lease so two never act at
 *     once), a ServiceAccount, a Role with only the verbs it needs, a
 *     RoleBinding, and a Service for its control link (7070) and admin API;
 *   - the cluster token and admin token as Secrets (kustomize secretGenerator
 *     over files `build` creates once with random tokens);
 *   - a NetworkPolicy: replica pods take traffic only from serve-bin's pods.
 *
 * The role flags follow src/cli/roles/* as the Swarm work defines them
 * (controller `--engine kubernetes`; a replica gets its spec from the
 * controller, so it needs only its names, `--health-port` and
 * `--drain-timeout-s`); the controller also gets the variables in `KUBE_ENV`
 * (namespace, ConfigMap, Lease, autoscaler owner).
 */
import { createHash } from "node:crypto";
import type { Deployment, DeploymentSpec } from "kubernetes-types/apps/v1";
import type { HorizontalPodAutoscaler } from "kubernetes-types/autoscaling/v2";
import type { Lease } from "kubernetes-types/coordination/v1";
import type { ConfigMap, Container, EnvVar, PodSpec, PodTemplateSpec, Probe, Service, ServiceAccount, Volume, VolumeMount } from "kubernetes-types/core/v1";
import type { NetworkPolicy } from "kubernetes-types/networking/v1";
import type { PolicyRule, Role, RoleBinding } from "kubernetes-types/rbac/v1";
import type { DeploymentConfig, ResolvedServeConfig } from "../config/schema.ts";
import { KUBE_ANNOTATIONS, KUBE_LABELS, KUBE_OBJECTS, PART_OF, REPLICA_PORT, REVISIONS_FILE, kubeDeploymentName, kubeRevision, replicaSelector, revisionName, type Revisions } from "../cluster/kubernetes/names.ts";
import { kubeResources } from "./resources.ts";
import { SWARM_PATHS } from "./swarm-stack.ts";

/** Who sets each replica count: serve-bin's controller, or a HorizontalPodAutoscaler per deployment. */
export type Autoscaler = "serve-bin" | "hpa";

/** What the manifests need besides the config. */
export interface KubernetesOptions {
  /** The image with serve-bin and the graph. */
  image: string;
  /** The config as the containers read it (the ConfigMap's `serve.yaml`). */
  configYaml: string;
  autoscaler: Autoscaler;
  /** The namespace everything goes into (kustomize sets it on every object; the RoleBinding names it for its ServiceAccount). */
  namespace: string;
  /** Each application's code hash (the graph and its module), part of its deployments' revisions. Default: the import path. */
  codeVersions?: Record<string, string>;
  /** The revisions the last build of this directory wrote: their Deployments stay scalable by the controller. */
  previous?: Revisions;
}

/** Any object this file writes. */
export type KubeObject = Deployment | Service | ConfigMap | ServiceAccount | Role | RoleBinding | Lease | NetworkPolicy | HorizontalPodAutoscaler;

/** The manifests: file name → objects (written as one multi-document YAML each), and the kustomization. */
export interface KubernetesManifests {
  files: Record<string, KubeObject[]>;
  kustomization: Record<string, unknown>;
  /** Each deployment's revision now and those before it (also in the ConfigMap, for the controller). */
  revisions: Revisions;
}

/** Environment the controller reads to find its cluster objects (names the lead's engine wiring uses). */
export const KUBE_ENV = {
  namespace: "SERVE_BIN_KUBE_NAMESPACE",
  configMap: "SERVE_BIN_KUBE_CONFIGMAP",
  lease: "SERVE_BIN_KUBE_LEASE",
  autoscaler: "SERVE_BIN_KUBE_AUTOSCALER",
} as const;

/** The files the build creates once (random) and kustomize turns into Secrets; never committed. */
export const TOKEN_FILES = { cluster: "cluster-token", admin: "admin-token" } as const;

/** The metric an HPA scales on: requests in flight per pod, as serve-bin's own autoscaler uses. */
export const HPA_METRIC = "serve_bin_deployment_ongoing_requests";

/** Old revisions a build keeps scalable by the controller (its Role names them). */
const MAX_PREVIOUS = 3;

/** Kubernetes kills this long after the drain timeout, as the local supervisor and the Swarm stack do. */
const KILL_MARGIN_S = 2;
const HEALTH_PORT = SWARM_PATHS.healthPort;
const CONTROL_PORT = SWARM_PATHS.controlPort;
const CONFIG_DIR = "/etc/serve-bin";
const SECRETS_DIR = "/var/run/serve-bin";
/** The image's user (Dockerfile): pods run as it, never as root. */
const IMAGE_UID = 10001;

/** Probe periods and timeouts are whole seconds ≥ 1 in Kubernetes. */
const wholeS = (s: number) => Math.max(1, Math.ceil(s));

/** A Kubernetes quantity for a (possibly fractional) count, e.g. 2 → "2", 1.5 → "1500m". */
export function quantity(n: number): string {
  return Number.isInteger(n) ? String(n) : `${Math.round(n * 1000)}m`;
}

/** Whether an HPA owns this deployment's count: always under `--autoscaler hpa`, except a count of 0 (an HPA's floor is 1). */
export function hpaOwns(autoscaler: Autoscaler, d: Pick<DeploymentConfig, "numReplicas">): boolean {
  return autoscaler === "hpa" && d.numReplicas !== 0;
}

function probe(path: string, periodS: number, timeoutS: number, failureThreshold: number): Probe {
  return { httpGet: { path, port: HEALTH_PORT }, periodSeconds: wholeS(periodS), timeoutSeconds: wholeS(timeoutS), failureThreshold };
}

/** Probes every role shares: started once `/-/healthz` answers (up to 10 min for a slow model load), alive while it does, ready on `/-/ready`. */
function probes(periodS: number, timeoutS: number): Pick<Container, "startupProbe" | "livenessProbe" | "readinessProbe"> {
  return {
    startupProbe: probe("/-/healthz", 5, timeoutS, 120),
    livenessProbe: probe("/-/healthz", periodS, timeoutS, 3),
    readinessProbe: probe("/-/ready", Math.min(periodS, 5), timeoutS, 1),
  };
}

function secretVolume(name: string, secret: string): [Volume, VolumeMount] {
  return [
    { name, secret: { secretName: secret, defaultMode: 0o440 } },
    { name, mountPath: `${SECRETS_DIR}/${name}`, readOnly: true },
  ];
}

interface PodParts {
  role: string;
  labels: Record<string, string>;
  args: string[];
  env?: EnvVar[];
  ports: Container["ports"];
  probes: Pick<Container, "startupProbe" | "livenessProbe" | "readinessProbe">;
  graceS: number;
  admin?: boolean;
  serviceAccount?: string;
  shmBytes?: number;
  resources?: Container["resources"];
}

/** One role's pod: the image, the config and token mounted, non-root, credentials only for the controller. */
function pod(opts: KubernetesOptions, configHash: string, p: PodParts): PodTemplateSpec {
  const [tokenVol, tokenMount] = secretVolume("cluster-token", KUBE_OBJECTS.token);
  const volumes: Volume[] = [{ name: "config", configMap: { name: KUBE_OBJECTS.config } }, tokenVol];
  const mounts: VolumeMount[] = [{ name: "config", mountPath: CONFIG_DIR, readOnly: true }, tokenMount];
  const env: EnvVar[] = [{ name: "SERVE_BIN_CLUSTER_TOKEN_FILE", value: `${tokenMount.mountPath}/token` }, ...(p.env ?? [])];
  if (p.admin) {
    const [adminVol, adminMount] = secretVolume("admin-token", KUBE_OBJECTS.adminToken);
    volumes.push(adminVol);
    mounts.push(adminMount);
    // The controller's working copy of its state; what must survive a restart is written to the ConfigMap.
    volumes.push({ name: "state", emptyDir: {} });
    mounts.push({ name: "state", mountPath: SWARM_PATHS.state });
  }
  if (p.shmBytes) {
    // Kubernetes gives a container 64 MiB of /dev/shm; the arena needs its configured size.
    volumes.push({ name: "shm", emptyDir: { medium: "Memory", sizeLimit: String(p.shmBytes) } });
    mounts.push({ name: "shm", mountPath: "/dev/shm" });
  }
  const spec: PodSpec = {
    automountServiceAccountToken: p.serviceAccount !== undefined,
    ...(p.serviceAccount ? { serviceAccountName: p.serviceAccount } : {}),
    terminationGracePeriodSeconds: wholeS(p.graceS) + KILL_MARGIN_S,
    // fsGroup: the secret files are readable by the image's group, not only by root.
    securityContext: { runAsNonRoot: true, runAsUser: IMAGE_UID, runAsGroup: IMAGE_UID, fsGroup: IMAGE_UID },
    containers: [
      {
        name: p.role,
        image: opts.image,
        args: p.args,
        env,
        ports: p.ports,
        ...p.probes,
        ...(p.resources ? { resources: p.resources } : {}),
        volumeMounts: mounts,
        securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } },
      },
    ],
    volumes,
  };
  return { metadata: { labels: p.labels, annotations: { [KUBE_ANNOTATIONS.configHash]: configHash } }, spec };
}

function meta(name: string, labels: Record<string, string>, annotations?: Record<string, string>) {
  return { name, labels, ...(annotations ? { annotations } : {}) };
}

/** A Deployment whose selector is exactly its pods' labels. */
function deploymentOf(name: string, labels: Record<string, string>, spec: Omit<DeploymentSpec, "selector">, annotations?: Record<string, string>): Deployment {
  return { apiVersion: "apps/v1", kind: "Deployment", metadata: meta(name, labels, annotations), spec: { selector: { matchLabels: labels }, ...spec } };
}

/** A new pod is ready before an old one drains, as the local runtime's rolling restart. */
const START_FIRST: DeploymentSpec["strategy"] = { type: "RollingUpdate", rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } };

const roleLabels = (role: string): Record<string, string> => ({ [KUBE_LABELS.partOf]: PART_OF, [KUBE_LABELS.component]: role });
const CONFIG_FILE = `${CONFIG_DIR}/serve.yaml`;
const controlAddress = `tcp://${KUBE_OBJECTS.controller}:${CONTROL_PORT}`;

/** One serve deployment: its Deployment, its headless Service, and under `--autoscaler hpa` its HPA. */
function replicaObjects(opts: KubernetesOptions, hash: string, config: ResolvedServeConfig, app: string, importPath: string, d: DeploymentConfig): KubeObject[] {
  const service = kubeDeploymentName(app, d.name);
  const revision = kubeRevision([opts.image, opts.codeVersions?.[app] ?? importPath, d.env]);
  // The Deployment is per revision; the Service (and so discovery) spans every revision of the deployment.
  const name = revisionName(service, revision);
  const labels = { ...replicaSelector(service), [KUBE_LABELS.revision]: revision };
  const annotations = { [KUBE_ANNOTATIONS.app]: app, [KUBE_ANNOTATIONS.deployment]: d.name };
  const hpa = hpaOwns(opts.autoscaler, d);
  // The pod's revision, told to the controller in its hello (a replica of other code is never claimed).
  const env: EnvVar[] = [...Object.entries(d.env).map(([k, v]) => ({ name: k, value: v })), { name: "SERVE_BIN_REVISION", valueFrom: { fieldRef: { fieldPath: `metadata.labels['${KUBE_LABELS.revision}']` } } }];
  const deployment = deploymentOf(
    name,
    labels,
    {
      // Left out when an HPA or serve-bin's autoscaler owns the count, so `kubectl apply` never resets it.
      ...(!hpa && d.numReplicas !== "auto" ? { replicas: d.numReplicas } : {}),
      strategy: START_FIRST,
      template: pod(opts, hash, {
        role: "replica",
        labels,
        args: ["replica", "--app", app, "--deployment", d.name, "--listen", `tcp://0.0.0.0:${REPLICA_PORT}`, "--controller", controlAddress, "--health-port", String(HEALTH_PORT), "--drain-timeout-s", String(d.gracefulShutdownTimeoutS)],
        env,
        ports: [{ name: "link", containerPort: REPLICA_PORT }, { name: "health", containerPort: HEALTH_PORT }],
        probes: probes(d.healthCheckPeriodS, d.healthCheckTimeoutS),
        graceS: d.gracefulShutdownTimeoutS,
        shmBytes: config.sharedMemory.enabled ? config.sharedMemory.arenaBytes : undefined,
        resources: kubeResources(d.resources),
      }),
    },
    annotations,
  );
  const headless: Service = {
    apiVersion: "v1",
    kind: "Service",
    metadata: meta(service, replicaSelector(service), annotations),
    // Headless: its EndpointSlices list each pod's own address, which is what callers connect to.
    spec: { clusterIP: "None", selector: replicaSelector(service), ports: [{ name: "link", port: REPLICA_PORT, targetPort: "link" }] },
  };
  if (!hpa) return [deployment, headless];
  const auto = d.numReplicas === "auto" ? d.autoscalingConfig : undefined;
  const fixed = d.numReplicas === "auto" ? 0 : d.numReplicas;
  const autoscaler: HorizontalPodAutoscaler = {
    apiVersion: "autoscaling/v2",
    kind: "HorizontalPodAutoscaler",
    metadata: meta(name, labels, annotations),
    spec: {
      scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name },
      // A fixed numReplicas becomes min = max: the HPA owns it, edited with kubectl.
      minReplicas: Math.max(1, auto ? auto.minReplicas : fixed),
      maxReplicas: auto ? auto.maxReplicas : fixed,
      metrics: [
        {
          type: "Pods",
          pods: { metric: { name: HPA_METRIC }, target: { type: "AverageValue", averageValue: quantity(auto?.targetOngoingRequests ?? d.maxOngoingRequests) } },
        },
      ],
      behavior: {
        scaleUp: { stabilizationWindowSeconds: Math.round(auto?.upscaleDelayS ?? 0) },
        scaleDown: { stabilizationWindowSeconds: Math.round(auto?.downscaleDelayS ?? 300) },
      },
    },
  };
  return [deployment, headless, autoscaler];
}

/** The controller's Role: watch EndpointSlices and pods, patch a pod's deletion cost, get and patch the scale of exactly these Deployments, its ConfigMap and Lease. */
export function controllerRules(deploymentNames: string[]): PolicyRule[] {
  return [
    { apiGroups: ["discovery.k8s.io"], resources: ["endpointslices"], verbs: ["list", "watch"] },
    // patch: a drained replica's pod gets the lowest pod-deletion-cost, so lowering the count deletes that pod.
    { apiGroups: [""], resources: ["pods"], verbs: ["list", "watch", "patch"] },
    { apiGroups: ["apps"], resources: ["deployments/scale"], resourceNames: deploymentNames, verbs: ["get", "patch"] },
    { apiGroups: [""], resources: ["configmaps"], resourceNames: [KUBE_OBJECTS.config], verbs: ["get", "update"] },
    { apiGroups: ["coordination.k8s.io"], resources: ["leases"], resourceNames: [KUBE_OBJECTS.lease], verbs: ["get", "update"] },
  ];
}

function controllerObjects(opts: KubernetesOptions, hash: string, config: ResolvedServeConfig, names: string[]): Record<string, KubeObject[]> {
  const labels = roleLabels("controller");
  const name = KUBE_OBJECTS.controller;
  const edgeGrace = config.proxy.shutdownTimeoutS;
  const account: ServiceAccount = { apiVersion: "v1", kind: "ServiceAccount", metadata: meta(name, labels) };
  const role: Role = { apiVersion: "rbac.authorization.k8s.io/v1", kind: "Role", metadata: meta(name, labels), rules: controllerRules(names) };
  const binding: RoleBinding = {
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "RoleBinding",
    metadata: meta(name, labels),
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name },
    subjects: [{ kind: "ServiceAccount", name, namespace: opts.namespace }],
  };
  const lease: Lease = { apiVersion: "coordination.k8s.io/v1", kind: "Lease", metadata: meta(KUBE_OBJECTS.lease, labels), spec: {} };
  const deployment = deploymentOf(name, labels, {
      replicas: 1,
      // Never two controllers scaling at once; the Lease guards the overlap a node loss can still cause.
      strategy: { type: "Recreate" },
      template: pod(opts, hash, {
        role: "controller",
        labels,
        args: ["controller", "--config", CONFIG_FILE, "--engine", "kubernetes", "--state-dir", SWARM_PATHS.state, "--listen", `tcp://0.0.0.0:${CONTROL_PORT}`,
          "--port", String(HEALTH_PORT), "--admin-host", "0.0.0.0", "--admin-port", String(config.admin.port), "--admin-token-file", `${SECRETS_DIR}/admin-token/token`],
        env: [
          { name: KUBE_ENV.namespace, valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } },
          { name: KUBE_ENV.configMap, value: KUBE_OBJECTS.config },
          { name: KUBE_ENV.lease, value: KUBE_OBJECTS.lease },
          { name: KUBE_ENV.autoscaler, value: opts.autoscaler },
        ],
        ports: [
          { name: "control", containerPort: CONTROL_PORT },
          { name: "admin", containerPort: config.admin.port },
          { name: "health", containerPort: HEALTH_PORT },
        ],
        probes: probes(10, 5),
        graceS: edgeGrace,
        admin: true,
        serviceAccount: name,
      }),
  });
  const service: Service = {
    apiVersion: "v1",
    kind: "Service",
    metadata: meta(name, labels),
    spec: {
      selector: labels,
      ports: [
        { name: "control", port: CONTROL_PORT, targetPort: "control" },
        { name: "admin", port: config.admin.port, targetPort: "admin" },
      ],
    },
  };
  return { "controller-rbac.yaml": [account, role, binding], "controller.yaml": [deployment, service, lease] };
}

function proxyObjects(opts: KubernetesOptions, hash: string, config: ResolvedServeConfig): KubeObject[] {
  const labels = roleLabels("proxy");
  const name = KUBE_OBJECTS.proxy;
  const port = config.proxy.port;
  const deployment = deploymentOf(name, labels, {
      replicas: 1,
      strategy: START_FIRST,
      template: pod(opts, hash, {
        role: "proxy",
        labels,
        args: ["proxy", "--config", CONFIG_FILE, "--controller", controlAddress, "--host", "0.0.0.0", "--port", String(port)],
        // The proxy's HTTP port is also where /-/healthz and /-/ready are (8000 by default).
        ports: [{ name: "http", containerPort: port }, ...(port === HEALTH_PORT ? [] : [{ name: "health", containerPort: HEALTH_PORT }])],
        probes: probes(10, 5),
        graceS: config.proxy.shutdownTimeoutS,
      }),
  });
  const service: Service = {
    apiVersion: "v1",
    kind: "Service",
    metadata: meta(name, labels),
    spec: { selector: labels, ports: [{ name: "http", port, targetPort: "http" }] },
  };
  return [deployment, service];
}

/** Replica pods take connections only from pods serve-bin made (controller, proxy, other replicas). */
function networkPolicy(): NetworkPolicy {
  return {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: meta(KUBE_OBJECTS.networkPolicy, { [KUBE_LABELS.partOf]: PART_OF }),
    spec: {
      podSelector: { matchLabels: roleLabels("replica") },
      policyTypes: ["Ingress"],
      ingress: [{ from: [{ podSelector: { matchLabels: { [KUBE_LABELS.partOf]: PART_OF } } }] }],
    },
  };
}

/**
 * Every manifest for `config` (applications already resolved, as `build` writes them).
 * @example kubernetesManifests(config, { image: "me/graph:1", configYaml, autoscaler: "serve-bin" }).files["controller.yaml"]
 */
export function kubernetesManifests(config: ResolvedServeConfig, opts: KubernetesOptions): KubernetesManifests {
  const hash = createHash("sha256").update(opts.configYaml).digest("hex");
  const configMap: ConfigMap = {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: meta(KUBE_OBJECTS.config, { [KUBE_LABELS.partOf]: PART_OF }, { [KUBE_ANNOTATIONS.configHash]: hash }),
    data: { "serve.yaml": opts.configYaml },
  };
  const files: Record<string, KubeObject[]> = { "config.yaml": [configMap] };
  const revisions: Revisions = {};
  for (const app of config.applications) {
    for (const d of app.deployments) {
      const objects = replicaObjects(opts, hash, config, app.name, app.importPath, d);
      const service = objects[1]!.metadata!.name!;
      if (revisions[service]) throw new Error(`two deployments map to the Kubernetes name ${service}`);
      const current = objects[0]!.metadata!.name!;
      const before = opts.previous?.[service];
      // The revisions before stay listed (so the controller may scale them down) until one is current again.
      const previous = before ? [...new Set([before.current, ...before.previous])].filter((n) => n !== current).slice(0, MAX_PREVIOUS) : [];
      const codeOf = (name: string) => (name === current ? (opts.codeVersions?.[app.name] ?? app.importPath) : before?.code?.[name]);
      const code = Object.fromEntries([current, ...previous].flatMap((n) => (codeOf(n) === undefined ? [] : [[n, codeOf(n)!]])));
      revisions[service] = { current, previous, code };
      // A new revision beside old ones starts at one pod (Kubernetes' default): the controller raises it as the old ones go.
      if (previous.length && (objects[0] as Deployment).spec!.replicas !== 0) delete (objects[0] as Deployment).spec!.replicas;
      files[`replica-${service}.yaml`] = objects;
    }
  }
  configMap.data![REVISIONS_FILE] = JSON.stringify(revisions, null, 2);
  const scalable = Object.values(revisions).flatMap((r) => [r.current, ...r.previous]);
  Object.assign(files, controllerObjects(opts, hash, config, scalable), { "proxy.yaml": proxyObjects(opts, hash, config), "network-policy.yaml": [networkPolicy()] });
  const kustomization = {
    apiVersion: "kustomize.config.k8s.io/v1beta1",
    kind: "Kustomization",
    namespace: opts.namespace,
    resources: Object.keys(files),
    // Created once by `build` with random tokens; kustomize names the Secrets with a hash of their content, so rotating a token rolls every pod.
    secretGenerator: [
      { name: KUBE_OBJECTS.token, files: [`token=${TOKEN_FILES.cluster}`] },
      { name: KUBE_OBJECTS.adminToken, files: [`token=${TOKEN_FILES.admin}`] },
    ],
  };
  return { files, kustomization, revisions };
}
