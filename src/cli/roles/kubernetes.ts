/**
 * `serve-bin controller --engine kubernetes`: what the controller role adds
 * on Kubernetes, around the same RemoteEngine and change path as on Swarm.
 *
 *   - API credentials from the pod's ServiceAccount (or `--kube-api` and
 *     `--kube-credentials` pointing elsewhere: `kubectl proxy`, a test's
 *     stand-in);
 *   - the controller Lease: this process acts only while it holds it; it
 *     waits for it before serving, renews it, and leaves (without draining
 *     a replica) when another controller took it;
 *   - the KubernetesEngine as the RemoteEngine's Scaler (deployments/scale),
 *     its EndpointSlice watch telling the RemoteEngine which replicas
 *     Kubernetes took out (`lost`), and a log line per change of what it lists;
 *   - one owner per count: under `--autoscaler hpa` a PATCH of numReplicas or
 *     autoscalingConfig answers 409 naming the HPA, and the controller's
 *     target follows the count the HPA sets on the Deployment (read from its
 *     `scale`), so the pods it adds are claimed and the ones it removes are
 *     not started again;
 *   - the applied config written back into the ConfigMap once a change
 *     serves (read from --state-dir, where only such configs land);
 *   - upgrades: each deployment moved off its previous revisions pod by pod
 *     (kubernetes-rollover.ts).
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { parse as parseYaml } from "yaml";
import type { ServeEnv } from "../../config/env.ts";
import type { ServeConfig } from "../../config/schema.ts";
import { toYAML } from "../../config/yaml.ts";
import { KubeApiError, KubeClient } from "../../cluster/kubernetes/client.ts";
import { KubernetesEngine, type KubeDeployment, type ReplicaSet } from "../../cluster/kubernetes/engine.ts";
import { inClusterConfig } from "../../cluster/kubernetes/in-cluster.ts";
import { ControllerLease } from "../../cluster/kubernetes/lease.ts";
import { KUBE_OBJECTS, PLANS_FILE, PREVIOUS_SUFFIX, REVISIONS_FILE, type Revisions, type StoredPlans } from "../../cluster/kubernetes/names.ts";
import type { RemoteEngine } from "../../cluster/remote-engine.ts";
import type { Server } from "../../http/server.ts";
import { hpaOwns } from "../kubernetes-manifests.ts";
import { Rollover } from "./kubernetes-rollover.ts";
import { WeightedRollout } from "./kubernetes-rollout.ts";
import { UsageError } from "../args.ts";

/** A config without rollouts' previous variants (`<app>~previous`) and their splits: those are the controller's own, planned from revisions, not from a file. */
function withoutVariants(config: ServeConfig): ServeConfig {
  const variant = (name: string) => name.endsWith(PREVIOUS_SUFFIX);
  return { ...config, applications: config.applications.filter((a) => !variant(a.name)), routes: config.routes.filter((r) => !Object.keys(r.split).some(variant)) };
}

/**
 * A controller container restarted in the same pod finds the applied config
 * in --state-dir, rollout variants included; a variant restored from there
 * would be planned from the application's file (the new code), so it is
 * dropped: the rollout begins again from revisions.json and plans.json.
 */
function forgetVariants(file: string): void {
  if (!existsSync(file)) return;
  const state = JSON.parse(readFileSync(file, "utf8")) as { config: ServeConfig };
  const config = withoutVariants(state.config);
  if (config.applications.length !== state.config.applications.length) writeFileSync(file, JSON.stringify({ ...state, config }, null, 2));
}

/** How long a Lease holder keeps it without renewing; renewed every third of it. */
const LEASE_S = 15;
/** How often an HPA-owned Deployment's count is read, for the controller's target to follow it. */
const FOLLOW_HPA_MS = 2000;

export interface KubeFlags {
  /** The API server's URL (default: from KUBERNETES_SERVICE_HOST/PORT). */
  api?: string;
  /** Where the ServiceAccount's token, namespace and ca.crt are (default: where Kubernetes mounts them). */
  credentials?: string;
  /** The --config file (a built serve.yaml keeps its own server sections when written back). */
  configFile: string;
  stateDir?: string;
}

/**
 * The Kubernetes side of the controller role; `lead()` before the server
 * starts, `attach()` once it runs, `tick()` with the role's snapshot timer.
 */
export class KubernetesControl {
  readonly client: KubeClient;
  readonly engine: KubernetesEngine;
  readonly #lease: ControllerLease;
  readonly #leaseName: string;
  readonly #hpa: boolean;
  #server: Server | null = null;
  #deploymentsSig = "";
  #listed = "";
  /** The applications and routes the ConfigMap holds: the start-up config's, then each one written. */
  #savedSig: string | null = null;
  #saving = false;
  #renew: ReturnType<typeof setInterval> | null = null;
  #follow: ReturnType<typeof setInterval> | null = null;
  #rollover: Rollover | null = null;
  #revisions: Revisions | undefined;
  #patch: Server["patchDeployment"] | null = null;
  /** Code upgrades with traffic moved in steps (kubernetes-rollout.ts). */
  readonly rollout: WeightedRollout;

  constructor(
    readonly flags: KubeFlags,
    env: ServeEnv,
    readonly log: (line: string) => void,
  ) {
    const autoscaler = env.kube?.autoscaler ?? "serve-bin";
    if (autoscaler !== "serve-bin" && autoscaler !== "hpa") throw new UsageError(`SERVE_BIN_KUBE_AUTOSCALER is "${autoscaler}": set it to serve-bin or hpa, as the manifests were built (--autoscaler)`);
    this.#hpa = autoscaler === "hpa";
    if (!flags.stateDir) throw new UsageError("--engine kubernetes needs --state-dir: the applied config is written back to the ConfigMap from there once a change serves");
    let options;
    try {
      options = inClusterConfig({ dir: flags.credentials, server: flags.api, env: { KUBERNETES_SERVICE_HOST: env.kube?.serviceHost, KUBERNETES_SERVICE_PORT: env.kube?.servicePort } });
    } catch (e) {
      throw new UsageError(`--engine kubernetes: ${(e as Error).message}`);
    }
    this.client = new KubeClient(options);
    // Beside serve.yaml in the mounted ConfigMap: which Deployment is each deployment's current revision.
    const revisionsFile = join(dirname(flags.configFile), REVISIONS_FILE);
    const revisions = (this.#revisions = existsSync(revisionsFile) ? (JSON.parse(readFileSync(revisionsFile, "utf8")) as Revisions) : undefined);
    this.engine = new KubernetesEngine({ client: this.client, deployments: [], configMap: env.kube?.configMap, autoscaler, revisions, log });
    // Beside them: the previous revisions' planned graphs, to serve their code during a rollout.
    const plansFile = join(dirname(flags.configFile), PLANS_FILE);
    const plans = existsSync(plansFile) ? (JSON.parse(readFileSync(plansFile, "utf8")) as StoredPlans) : {};
    this.rollout = new WeightedRollout({ engine: this.engine, client: this.client, revisions: revisions ?? {}, plans, skip: (app, d) => this.#hpa && this.#hpaDeployment(app, d), log });
    forgetVariants(join(flags.stateDir, "config.json"));
    const identity = env.kube?.podName ?? `controller-${process.pid}`;
    this.#leaseName = env.kube?.lease ?? KUBE_OBJECTS.lease;
    this.#lease = new ControllerLease({ client: this.client, name: this.#leaseName, identity, durationS: LEASE_S });
  }

  /**
   * Waits until this process holds the controller Lease, then renews it;
   * `lost` runs if another controller takes it (a renewal found it held).
   */
  async lead(lost: () => void): Promise<void> {
    let waiting = false;
    while (!(await this.#tryLead())) {
      if (!waiting) this.log(`serve-bin: another controller holds the Lease ${this.#leaseName}; waiting for it`);
      waiting = true;
      await Bun.sleep((LEASE_S * 1000) / 3);
    }
    this.log(`serve-bin: holding the Lease; Kubernetes API at ${this.client.server}, namespace ${this.client.namespace}`);
    let renewed = performance.now();
    this.#renew = setInterval(() => {
      this.#lease.tryLead().then(
        (held) => {
          if (held) return void (renewed = performance.now());
          this.log("serve-bin: another controller took the Lease; leaving the replicas to it");
          lost();
        },
        (e) => {
          this.log(`serve-bin: cannot renew the Lease: ${(e as Error).message}`);
          // Unrenewed past its duration, the Lease may be another controller's already: stop acting.
          if (performance.now() - renewed > LEASE_S * 1000) {
            this.log(`serve-bin: the Lease was not renewed for ${LEASE_S} s; leaving the replicas to the next controller`);
            lost();
          }
        },
      );
    }, (LEASE_S * 1000) / 3);
  }

  /** One try for the Lease; an API refusal at start says what is missing. */
  async #tryLead(): Promise<boolean> {
    try {
      return await this.#lease.tryLead();
    } catch (e) {
      if (e instanceof KubeApiError && e.status === 404)
        throw new Error(`the Lease ${this.#leaseName} is not in namespace ${this.client.namespace}: apply the manifests first (kubectl apply -k DIR) (${e.message})`);
      if (e instanceof KubeApiError && (e.status === 401 || e.status === 403))
        throw new Error(`the API server refused the controller's ServiceAccount (${e.status}): apply the manifests' Role and RoleBinding (controller-rbac.yaml) (${e.message})`);
      throw e;
    }
  }

  /**
   * Whether a replica pod of `revision` may be claimed: not when revisions.json
   * says its revision runs other code than the current one (it could not
   * construct this controller's graph); an image- or env-only revision can.
   */
  eligible = (app: string, deployment: string, revision: string | undefined): boolean => {
    // A rollout's previous variant is given only its previous revision's pods (appOf).
    if (!revision || this.rollout.isVariant(app)) return true;
    const service = this.engine.kubeName(app, deployment);
    const current = this.engine.deploymentName(app, deployment);
    const code = this.#revisions?.[service]?.code;
    const mine = code?.[`${service}-${revision}`];
    return mine === undefined || code![current] === undefined || mine === code![current];
  };

  /** Wires the running server: the HPA's 409 on its PATCH, discovery into the RemoteEngine. */
  attach(server: Server, remote: RemoteEngine): void {
    this.#server = server;
    this.#syncDeployments();
    this.rollout.start(server);
    this.#rollover = new Rollover({ engine: this.engine, client: this.client, server, remote, eligible: this.eligible, skip: (app, d) => (this.#hpa && hpaOwns("hpa", d)) || this.rollout.owns(app, d.name), log: this.log });
    server.rollback = (app) => this.rollout.rollback(app);
    const status = server.status.bind(server);
    // Each application a rollout moves shows it.
    server.status = () => {
      const s = status();
      for (const [name, a] of Object.entries(s.applications)) {
        const r = this.rollout.statusOf(name);
        if (r) (a as typeof a & { rollout?: unknown }).rollout = r;
      }
      return s;
    };
    const patch = (this.#patch = server.patchDeployment.bind(server));
    if (this.#hpa) this.#follow = setInterval(() => void this.#followHpa(), FOLLOW_HPA_MS);
    // Refused before anything changes: one owner of each count.
    server.patchDeployment = async (app, name, p, wait) => {
      this.engine.checkPatch(app, name, p);
      return patch(app, name, p, wait);
    };
    this.engine.onLost((address) => remote.lost(address));
    this.engine.onReplicas((sets) => this.#logListed(sets));
  }

  /** Whether an HPA owns the deployment's count (under --autoscaler hpa). */
  #hpaDeployment(app: string, deployment: string): boolean {
    const d = this.#server?.appliedConfig().applications.find((a) => a.name === app)?.deployments.find((x) => x.name === deployment);
    return d === undefined || hpaOwns("hpa", d);
  }

  #followHpa = async (): Promise<void> => {
    for (const app of this.#server!.appliedConfig().applications) {
      for (const d of app.deployments) {
        if (!hpaOwns("hpa", d)) continue;
        const name = this.engine.deploymentName(app.name, d.name);
        const n = await this.client.getScale(name).then((s) => s.spec.replicas ?? 0, () => null);
        if (n === null || n < 1 || n === d.numReplicas) continue;
        this.log(`serve-bin: the HPA ${name} set ${n} replicas; ${app.name}/${d.name} follows`);
        await this.#patch!(app.name, d.name, { numReplicas: n }, false).catch((e) => this.log(`serve-bin: cannot follow the HPA ${name}: ${(e as Error).message}`));
      }
    }
  };

  #logListed(sets: ReplicaSet[]): void {
    const line = sets.map((s) => `${s.app}/${s.deployment} ${s.addresses.length}`).join(", ");
    if (line === this.#listed) return;
    this.#listed = line;
    this.log(`serve-bin: Kubernetes lists ready replicas: ${line}`);
  }

  #syncDeployments(): void {
    const config = this.#server!.changes.current.config;
    const deployments: KubeDeployment[] = this.#server!.appliedConfig().applications.filter((a) => !this.rollout.isVariant(a.name)).flatMap((a) =>
      a.deployments.map((d) => ({ app: a.name, deployment: d.name, hpa: this.#hpa && hpaOwns("hpa", d) })),
    );
    const sig = JSON.stringify(deployments) + config.applications.length;
    if (sig === this.#deploymentsSig) return;
    this.#deploymentsSig = sig;
    this.engine.setDeployments(deployments);
  }

  /** Called every SNAPSHOT_EVERY_MS: the known deployments, and the ConfigMap behind the applied config. */
  tick(): void {
    if (!this.#server) return;
    this.#syncDeployments();
    const file = join(this.flags.stateDir!, "config.json");
    if (this.#saving || !existsSync(file)) return;
    const saved = (JSON.parse(readFileSync(file, "utf8")) as { config: ServeConfig }).config;
    // A rollout's previous variant and its split are the controller's own: the ConfigMap never holds them.
    const applied = withoutVariants(saved);
    // What a PATCH can change; the ConfigMap holds the start-up config (as built, or as last written) until one did.
    const sig = JSON.stringify([applied.applications, applied.routes]);
    this.#savedSig ??= JSON.stringify([this.#server.opts.config.applications, this.#server.opts.config.routes]);
    if (sig === this.#savedSig) return;
    this.#saving = true;
    this.engine.saveConfig(this.#yamlOf(applied)).then(
      () => {
        this.#savedSig = sig;
        this.log(`serve-bin: wrote the applied config to the ConfigMap ${KUBE_OBJECTS.config}`);
      },
      (e) => this.log(`serve-bin: cannot write the ConfigMap (will try again): ${(e as Error).message}`),
    ).finally(() => (this.#saving = false));
  }

  /** The built serve.yaml with the applications and routes as applied: server sections stay as built, so kubectl diff shows only what changed. */
  #yamlOf(config: ServeConfig): string {
    if (!/\.(ya?ml|json)$/.test(this.flags.configFile)) return toYAML(config);
    const built = parseYaml(readFileSync(this.flags.configFile, "utf8")) as Partial<ServeConfig>;
    return toYAML({ ...built, applications: config.applications, routes: config.routes } as ServeConfig);
  }

  async stop(): Promise<void> {
    if (this.#renew) clearInterval(this.#renew);
    if (this.#follow) clearInterval(this.#follow);
    this.#rollover?.stop();
    this.rollout.stop();
    await this.engine.stop();
  }
}
