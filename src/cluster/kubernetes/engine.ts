/**
 * The Kubernetes engine (SPEC §9): what the controller does to a cluster that
 * `serve-bin build --target kubernetes` deployed. Kubernetes starts, restarts
 * and reschedules the pods; serve-bin never spawns one. Independent of the
 * local controller on purpose: the lead wires it in beside the local and
 * Swarm engines.
 *
 * Interface:
 *   - `kubeName(app, deployment)` → the Kubernetes Deployment (and headless
 *     Service) name, the same function the manifests use;
 *   - `scale(app, deployment, n)` → void: the count is set by patching
 *     `deployments/NAME/scale` (src/cluster/kubernetes/client.ts). Calls for one
 *     deployment are serialised and the latest count wins (the shape of the
 *     Swarm engine's `Scaler`); `scaleNow` is the same as a promise;
 *   - `onReplicas(listener)` → a discovery feed: for each (app, deployment),
 *     the ready replicas' addresses (`tcp://ip:7000`) from EndpointSlices,
 *     called with the whole set on every change; one watch for all;
 *   - `checkPatch(app, deployment, patch)` → throws ServeError `conflict`
 *     (HTTP 409) naming the HPA when `--autoscaler hpa` gave this deployment
 *     one and the PATCH sets numReplicas or autoscalingConfig: exactly one
 *     owner per replica count. The admin PATCH calls it before the change;
 *   - `saveConfig(yaml)` → writes the applied config back into the ConfigMap,
 *     so `kubectl diff -k DIR` shows what PATCHes changed since the build;
 *   - `applyPatch(app, deployment, patch, yaml)` → the three above in the
 *     order an admin PATCH needs them (check, scale, save);
 *   - `stop()` ends the watch.
 * For the data plane's DNS fallback, a deployment's headless Service name
 * (`kubeName`) resolves to its ready pods' addresses. Only the holder of the
 * controller Lease (lease.ts, `ControllerLease.tryLead()`) should scale or
 * save the config.
 */
import type { DeploymentPatch } from "../../config/schema.ts";
import { ServeError } from "../../error.ts";
import { KubeClient } from "./client.ts";
import { EndpointSliceFeed, type FeedStats, type ReadyAddresses } from "./endpoint-feed.ts";
import { KUBE_OBJECTS, REPLICA_SLICES_SELECTOR, kubeDeploymentName } from "./names.ts";

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
  log?: (line: string) => void;
}

/**
 * @example
 * const engine = new KubernetesEngine({ client, deployments: [{ app: "default", deployment: "Model", hpa: false }] });
 * engine.onReplicas((sets) => console.log(sets)); engine.scale("default", "Model", 3);
 */
export class KubernetesEngine {
  readonly #client: KubeClient;
  readonly #configMap: string;
  readonly #log: (line: string) => void;
  #byName = new Map<string, KubeDeployment>();
  readonly #want = new Map<string, number>();
  readonly #driving = new Map<string, Promise<void>>();
  readonly #listeners: ((sets: ReplicaSet[]) => void)[] = [];
  #feed: EndpointSliceFeed | null = null;
  /** The last scale error per Kubernetes Deployment, for status and logs. */
  readonly errors = new Map<string, string>();

  constructor(opts: KubernetesEngineOptions) {
    this.#client = opts.client;
    this.#configMap = opts.configMap ?? KUBE_OBJECTS.config;
    this.#log = opts.log ?? ((l) => console.error(l));
    this.setDeployments(opts.deployments);
  }

  /** The Kubernetes Deployment of a serve deployment. */
  kubeName(app: string, deployment: string): string {
    return kubeDeploymentName(app, deployment);
  }

  /** Replaces the known deployments (after a deploy changed the applications). */
  setDeployments(deployments: KubeDeployment[]): void {
    this.#byName = new Map(deployments.map((d) => [this.kubeName(d.app, d.deployment), d]));
    if (this.#feed) this.#emit(this.#feed.current);
  }

  #known(app: string, deployment: string): KubeDeployment {
    const d = this.#byName.get(this.kubeName(app, deployment));
    if (!d) throw new ServeError("not_found", `no deployment ${deployment} in application ${app} on this cluster; the manifests are built from the graph (serve-bin build --target kubernetes)`);
    return d;
  }

  /** Refuses (409) a PATCH that would set a count an HPA owns. */
  checkPatch(app: string, deployment: string, patch: { numReplicas?: unknown; autoscalingConfig?: unknown }): void {
    if (!this.#known(app, deployment).hpa) return;
    const fields = (["numReplicas", "autoscalingConfig"] as const).filter((f) => patch[f] !== undefined);
    if (fields.length === 0) return;
    const hpa = this.kubeName(app, deployment);
    throw new ServeError(
      "conflict",
      `${fields.join(" and ")} of ${deployment} belong to the HorizontalPodAutoscaler ${hpa} (built with --autoscaler hpa): change it with kubectl edit hpa ${hpa}, or rebuild without --autoscaler hpa to let serve-bin scale`,
      { deployment, body: { owner: "hpa", hpa } },
    );
  }

  /** Sets the replica count; returns at once (the latest count for a deployment wins). */
  scale(app: string, deployment: string, replicas: number): void {
    void this.scaleNow(app, deployment, replicas).catch(() => {});
  }

  /** Sets the replica count; resolves when the API server took it (or the last attempt failed, see `errors`). */
  scaleNow(app: string, deployment: string, replicas: number): Promise<void> {
    const d = this.#known(app, deployment);
    if (d.hpa) throw new ServeError("conflict", `${deployment}'s replica count belongs to the HorizontalPodAutoscaler ${this.kubeName(app, deployment)}`, { deployment });
    const name = this.kubeName(app, deployment);
    this.#want.set(name, replicas);
    // Serialised per Deployment: a count asked for while one is in flight is sent after it.
    const next = (this.#driving.get(name) ?? Promise.resolve()).then(() => this.#send(name));
    this.#driving.set(name, next);
    return next;
  }

  async #send(name: string): Promise<void> {
    const replicas = this.#want.get(name)!;
    try {
      await this.#client.scale(name, replicas);
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

  #emit(ready: ReadyAddresses): void {
    const sets = [...this.#byName].map(([name, d]) => ({ app: d.app, deployment: d.deployment, addresses: ready.get(name) ?? [] }));
    for (const l of this.#listeners) l(sets);
  }

  /** The discovery watch's counters (lists, relists on 410, errors). */
  get discoveryStats(): FeedStats | null {
    return this.#feed?.stats ?? null;
  }

  /**
   * What an admin PATCH of a deployment does to the cluster, once the change
   * path has accepted it: refuse a count an HPA owns (409, before anything is
   * written), set a fixed numReplicas on the Deployment's scale, then write
   * the applied config to the ConfigMap. ("auto" leaves the count to
   * serve-bin's autoscaler, which calls `scale` itself.)
   */
  async applyPatch(app: string, deployment: string, patch: DeploymentPatch, appliedConfigYaml: string): Promise<void> {
    this.checkPatch(app, deployment, patch);
    if (typeof patch.numReplicas === "number") {
      await this.scaleNow(app, deployment, patch.numReplicas);
      const error = this.errors.get(this.kubeName(app, deployment));
      if (error) throw new ServeError("unavailable", `the Kubernetes API did not take ${deployment}'s replica count: ${error}`, { deployment });
    }
    await this.saveConfig(appliedConfigYaml);
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
