/**
 * The Kubernetes engine (SPEC §9): what the controller does to a cluster that
 * `serve-bin build --target kubernetes` deployed. Kubernetes starts, restarts
 * and reschedules the pods; serve-bin never spawns one. The controller role
 * puts it behind the `RemoteEngine` as its `Scaler`: replicas dial in over the
 * authenticated link and are claimed as on Swarm; this engine sets the counts
 * and reads what Kubernetes says about the pods.
 *
 *   - `scale(app, deployment, n, how)` (the `Scaler`): the count is set by
 *     patching `deployments/NAME/scale` (client.ts). The counts asked for in
 *     one reconcile pass are coalesced into one PATCH; PATCHes for one
 *     deployment are serialised and the latest count wins; `atLeast` never
 *     lowers a count (only a stop the controller chose does, `exactly`). A
 *     count an HPA owns is left alone. `scaleNow` is the same as a promise;
 *   - `onReplicas(listener)` → the discovery feed: for each known (app,
 *     deployment), the ready replicas' addresses (`tcp://ip:port`) from
 *     EndpointSlices, with the whole set on every change; one watch for all.
 *     `onLost(listener)` hears each address that left the ready set (not as terminating);
 *   - `checkPatch(app, deployment, patch)` → throws ServeError `conflict`
 *     (HTTP 409) naming the HPA when `--autoscaler hpa` gave this deployment
 *     one and the PATCH sets numReplicas or autoscalingConfig: exactly one
 *     owner per replica count;
 *   - `saveConfig(yaml)` → writes the applied config back into the ConfigMap,
 *     so `kubectl diff -k DIR` shows what PATCHes changed since the build;
 *   - `stop()` ends the watch.
 * For the data plane's DNS fallback, a deployment's headless Service name
 * (`kubeName`) resolves to its ready pods' addresses. Only the holder of the
 * controller Lease (lease.ts) scales or saves the config.
 */
import { ServeError } from "../../error.ts";
import type { Scaler } from "../remote-engine.ts";
import { KubeClient, POD_DELETION_COST } from "./client.ts";
import { EndpointSliceFeed, type FeedStats, type ReadyAddresses } from "./endpoint-feed.ts";
import { KUBE_OBJECTS, REPLICA_SLICES_SELECTOR, kubeDeploymentName, type Revisions } from "./names.ts";

/** One serve deployment the engine knows, and whether an HPA owns its count. */
export interface KubeDeployment {
  app: string;
  deployment: string;
  hpa: boolean;
}

/** Ready replica addresses of one serve deployment. */
export interface ReplicaSet {
  app: string;
  deployment: string;
  addresses: string[];
}

export interface KubernetesEngineOptions {
  client: KubeClient;
  deployments: KubeDeployment[];
  /** The ConfigMap with `serve.yaml`. Default `serve-bin-config`. */
  configMap?: string;
  /** The build's revisions (ConfigMap `revisions.json`): the current one's Deployment is what is scaled. Default: none, the Deployment is named as its Service. */
  revisions?: Revisions;
  /** Who owns the count of a deployment not (yet) in `deployments`: under "hpa", its HPA. Default "serve-bin". */
  autoscaler?: "serve-bin" | "hpa";
  log?: (line: string) => void;
}

type How = "atLeast" | "exactly";

/**
 * @example
 * const engine = new KubernetesEngine({ client, deployments: [{ app: "default", deployment: "Model", hpa: false }] });
 * engine.onReplicas((sets) => console.log(sets)); engine.scale("default", "Model", 3, "exactly");
 */
export class KubernetesEngine implements Scaler {
  readonly #client: KubeClient;
  readonly #configMap: string;
  readonly #log: (line: string) => void;
  readonly #hpaDefault: boolean;
  readonly #revisions: Revisions;
  #byName = new Map<string, KubeDeployment>();
  readonly #want = new Map<string, { replicas: number; how: How }>();
  /** Deployments whose next PATCH is scheduled and not yet begun: later counts join it. */
  readonly #queued = new Set<string>();
  readonly #driving = new Map<string, Promise<void>>();
  readonly #listeners: ((sets: ReplicaSet[]) => void)[] = [];
  readonly #lostListeners: ((address: string) => void)[] = [];
  #ready = new Set<string>();
  /** Each Deployment's count as the API server last answered it. */
  readonly #counts = new Map<string, number>();
  #feed: EndpointSliceFeed | null = null;
  /** The last scale error per Kubernetes Deployment, for status and logs. */
  readonly errors = new Map<string, string>();
  /** Ceilings on a Deployment's count while its previous revisions still run pods (rollout.ts). */
  readonly #caps = new Map<string, number>();
  /** A rollout's previous variant (an application of its own to the controller): its base application and each deployment's previous Deployment. */
  readonly #variants = new Map<string, { app: string; deployments: Map<string, string> }>();
  /** The pod-deletion-cost last given to a drained replica's pod: each next one lower, so the latest drained goes first. */
  #lowestCost = -1000;

  constructor(opts: KubernetesEngineOptions) {
    this.#client = opts.client;
    this.#configMap = opts.configMap ?? KUBE_OBJECTS.config;
    this.#log = opts.log ?? ((l) => console.error(l));
    this.#hpaDefault = opts.autoscaler === "hpa";
    this.#revisions = opts.revisions ?? {};
    this.setDeployments(opts.deployments);
  }

  /** The headless Service of a serve deployment (every revision's pods are behind it). */
  kubeName(app: string, deployment: string): string {
    return kubeDeploymentName(this.#variants.get(app)?.app ?? app, deployment);
  }

  /** Scales a rollout's previous variant `variant` of `app` through the previous revisions' Deployments (deployment → Deployment), or forgets it (null). */
  setVariant(variant: string, app: string, deployments: Record<string, string> | null): void {
    if (deployments) this.#variants.set(variant, { app, deployments: new Map(Object.entries(deployments)) });
    else this.#variants.delete(variant);
  }

  /** The Deployment (and HPA) of a serve deployment's current revision. */
  deploymentName(app: string, deployment: string): string {
    const previous = this.#variants.get(app)?.deployments.get(deployment);
    if (previous) return previous;
    const service = this.kubeName(app, deployment);
    return this.#revisions[service]?.current ?? service;
  }

  /** Replaces the known deployments (after a change of the applications). */
  setDeployments(deployments: KubeDeployment[]): void {
    this.#byName = new Map(deployments.map((d) => [this.kubeName(d.app, d.deployment), d]));
    if (this.#feed) this.#emit(this.#feed.current);
  }

  #hpaOwns(app: string, deployment: string): boolean {
    // Before the controller tells which deployments exist, under "hpa" nothing is scaled.
    return this.#byName.get(this.kubeName(app, deployment))?.hpa ?? this.#hpaDefault;
  }

  /** Refuses (409) a PATCH that would set a count an HPA owns. */
  checkPatch(app: string, deployment: string, patch: { numReplicas?: unknown; autoscalingConfig?: unknown }): void {
    if (!this.#hpaOwns(app, deployment)) return;
    const fields = (["numReplicas", "autoscalingConfig"] as const).filter((f) => patch[f] !== undefined);
    if (fields.length === 0) return;
    const hpa = this.deploymentName(app, deployment);
    throw new ServeError(
      "conflict",
      `${fields.join(" and ")} of ${deployment} belong to the HorizontalPodAutoscaler ${hpa} (built with --autoscaler hpa): change it with kubectl edit hpa ${hpa}, or rebuild without --autoscaler hpa to let serve-bin scale`,
      { deployment, body: { owner: "hpa", hpa } },
    );
  }

  /** Sets the replica count (the `Scaler`); returns at once. A count an HPA owns is not touched. */
  scale(app: string, deployment: string, replicas: number, how: How = "exactly"): void {
    if (this.#hpaOwns(app, deployment)) return;
    void this.scaleNow(app, deployment, replicas, how).catch(() => {});
  }

  /** Sets the replica count; resolves when the API server took it (or the last attempt failed, see `errors`). */
  scaleNow(app: string, deployment: string, replicas: number, how: How = "exactly"): Promise<void> {
    if (this.#hpaOwns(app, deployment)) throw new ServeError("conflict", `${deployment}'s replica count belongs to the HorizontalPodAutoscaler ${this.deploymentName(app, deployment)}`, { deployment });
    const name = this.deploymentName(app, deployment);
    const before = this.#want.get(name);
    // Within one pass a stop and a start (a replacement) net out; an exact count is not undone by a later "at least".
    this.#want.set(name, { replicas, how: this.#queued.has(name) && before?.how === "exactly" ? "exactly" : how });
    if (this.#queued.has(name)) return this.#driving.get(name)!;
    this.#queued.add(name);
    // Serialised per Deployment; the timer lets every claim of the reconcile pass join this one PATCH.
    const next = (this.#driving.get(name) ?? Promise.resolve()).then(() => new Promise((r) => setTimeout(r, 0))).then(() => this.#send(name));
    this.#driving.set(name, next);
    return next;
  }

  /**
   * Caps (or with undefined, uncaps) the count of the deployment's current
   * revision; the last count asked is sent again under it (`exactly`: also
   * lowered to it, as a rollback does).
   */
  setCap(app: string, deployment: string, cap: number | undefined, how: How = "atLeast"): void {
    const name = this.deploymentName(app, deployment);
    const next = cap ?? Number.MAX_SAFE_INTEGER;
    if (this.#caps.get(name) === next) return;
    this.#caps.set(name, next);
    const want = this.#want.get(name);
    if (want && !this.#hpaOwns(app, deployment)) this.scale(app, deployment, want.replicas, how);
  }

  /**
   * A replica the controller drains is leaving (the `Scaler`'s hook): its pod
   * gets the lowest pod-deletion-cost yet, before any later count of its
   * Deployment is sent (same queue), so the count lowered once it drained
   * deletes that pod and not a serving one — even while its container is
   * still seen ready, or restarting after it exited.
   */
  draining(app: string, deployment: string, address: string): void {
    const pod = this.#feed?.podOf(address);
    if (!pod || this.#hpaOwns(app, deployment)) return;
    const name = this.deploymentName(app, deployment);
    const cost = --this.#lowestCost;
    // A count already queued goes first; one asked after this waits for it.
    this.#queued.delete(name);
    const next = (this.#driving.get(name) ?? Promise.resolve()).then(() =>
      this.#client.setDeletionCost(pod, cost).then(
        () => {},
        (e) => this.#log(`serve-bin: cannot mark pod ${pod} to go first (${POD_DELETION_COST}): ${(e as Error).message}`),
      ),
    );
    this.#driving.set(name, next);
  }

  /** Previous revisions of a deployment (from the build's revisions.json), whose pods a rollover takes down. */
  previousOf(app: string, deployment: string): string[] {
    return this.#revisions[this.kubeName(app, deployment)]?.previous ?? [];
  }

  async #send(name: string): Promise<void> {
    this.#queued.delete(name);
    const { how } = this.#want.get(name)!;
    // Until the rollover's first step, a revision with previous ones beside it stays at one pod.
    const service = Object.entries(this.#revisions).find(([, r]) => r.current === name)?.[1];
    const replicas = Math.min(this.#want.get(name)!.replicas, this.#caps.get(name) ?? (service?.previous.length ? 1 : Number.MAX_SAFE_INTEGER));
    try {
      const after = await this.#client.scale(name, replicas, how);
      if (after.spec.replicas !== this.#counts.get(name)) this.#log(`serve-bin: ${name} runs ${after.spec.replicas} replicas`);
      this.#counts.set(name, after.spec.replicas ?? 0);
      this.errors.delete(name);
    } catch (e) {
      this.errors.set(name, (e as Error).message);
      this.#log(`serve-bin: cannot scale ${name} to ${replicas}: ${(e as Error).message}`);
    }
  }

  /** Listens to the ready replicas of every known deployment; starts the one watch on first use. */
  onReplicas(listener: (sets: ReplicaSet[]) => void): void {
    this.#listeners.push(listener);
    this.#feed ??= new EndpointSliceFeed(this.#client, REPLICA_SLICES_SELECTOR, (ready) => this.#emit(ready)).start();
  }

  /**
   * Hears each replica address that Kubernetes no longer lists as ready because its pod was lost or fails its
   * probe. A pod being deleted (listed as terminating) is left out: its replica says it is leaving and drains.
   */
  onLost(listener: (address: string) => void): void {
    this.#lostListeners.push(listener);
  }

  #emit(ready: ReadyAddresses): void {
    const sets = [...this.#byName].map(([name, d]) => ({ app: d.app, deployment: d.deployment, addresses: ready.get(name) ?? [] }));
    const now = new Set([...ready.values()].flat());
    const gone = [...this.#ready].filter((a) => !now.has(a) && !this.#feed?.terminating(a));
    this.#ready = now;
    for (const l of this.#listeners) l(sets);
    for (const a of gone) for (const l of this.#lostListeners) l(a);
  }

  /** The discovery watch's counters (lists, relists on 410, errors). */
  get discoveryStats(): FeedStats | null {
    return this.#feed?.stats ?? null;
  }

  /** Writes the applied config into the ConfigMap (read, replace `serve.yaml`, PUT; retried on 409). */
  async saveConfig(yaml: string): Promise<void> {
    await this.#client.updateConfigMap(this.#configMap, (data) => ({ ...data, "serve.yaml": yaml }));
  }

  async stop(): Promise<void> {
    await this.#feed?.stop();
    await Promise.all(this.#driving.values());
  }
}
