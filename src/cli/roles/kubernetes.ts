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
 *     serves (read from --state-dir, where only such configs land).
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { parse as parseYaml } from "yaml";
import type { ServeEnv } from "../../config/env.ts";
import type { ServeConfig } from "../../config/schema.ts";
import { toYAML } from "../../config/yaml.ts";
import { KubeApiError, KubeClient } from "../../cluster/kubernetes/client.ts";
import { KubernetesEngine, type KubeDeployment, type ReplicaSet } from "../../cluster/kubernetes/engine.ts";
import { inClusterConfig } from "../../cluster/kubernetes/in-cluster.ts";
import { ControllerLease } from "../../cluster/kubernetes/lease.ts";
import { rolloverStep } from "../../cluster/kubernetes/rollout.ts";
import { KUBE_OBJECTS, REVISIONS_FILE, type Revisions } from "../../cluster/kubernetes/names.ts";
import type { RemoteEngine } from "../../cluster/remote-engine.ts";
import type { Server } from "../../http/server.ts";
import { hpaOwns } from "../kubernetes-manifests.ts";
import { UsageError } from "../args.ts";

/** How long a Lease holder keeps it without renewing; renewed every third of it. */
const LEASE_S = 15;
/** How often an HPA-owned Deployment's count is read, for the controller's target to follow it. */
const FOLLOW_HPA_MS = 2000;
/** How often a rollover from previous revisions takes its next step. */
const ROLLOVER_MS = 500;

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
  /** The state file as last seen, and whether the ConfigMap has it. */
  #savedState: string | null = null;
  #saving = false;
  #renew: ReturnType<typeof setInterval> | null = null;
  #follow: ReturnType<typeof setInterval> | null = null;
  #rollover: ReturnType<typeof setInterval> | null = null;
  #revisions: Revisions | undefined;
  #remote: RemoteEngine | null = null;
  /** Per deployment in a rollover: since when claims wait with no pod, and the linked count when an old pod was last let go. */
  readonly #rolling = new Map<string, { starvedSince: number; linkedAtLower: number | null; done: boolean }>();
  #stepping = false;
  #patch: Server["patchDeployment"] | null = null;

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
    if (!revision) return true;
    const service = this.engine.kubeName(app, deployment);
    const current = this.engine.deploymentName(app, deployment);
    const code = this.#revisions?.[service]?.code;
    const mine = code?.[`${service}-${revision}`];
    return mine === undefined || code![current] === undefined || mine === code![current];
  };

  /** Wires the running server: the HPA's 409 on its PATCH, discovery into the RemoteEngine. */
  attach(server: Server, remote: RemoteEngine): void {
    this.#server = server;
    this.#remote = remote;
    this.#syncDeployments();
    this.#rollover = setInterval(() => void this.#rolloverStep(), ROLLOVER_MS);
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

  /**
   * Moves each deployment off its previous revisions (revisions.json) one pod
   * at a time (rollout.ts `rolloverStep`): an old pod goes when a new one is
   * connected and waiting, or when claims starve for room; the current
   * revision is capped one above what the old ones leave.
   */
  async #rolloverStep(): Promise<void> {
    if (this.#stepping) return;
    this.#stepping = true;
    try {
      const status = this.#server!.status();
      for (const app of this.#server!.appliedConfig().applications) {
        for (const d of app.deployments) {
          const previous = this.engine.previousOf(app.name, d.name);
          const key = `${app.name}/${d.name}`;
          const state = this.#rolling.get(key) ?? { starvedSince: 0, linkedAtLower: null, done: false };
          this.#rolling.set(key, state);
          if (!previous.length || state.done || (this.#hpa && hpaOwns("hpa", d))) continue;
          const counts = await Promise.all(previous.map((name) => this.client.getScale(name).then((s) => ({ name, replicas: s.spec.replicas ?? 0 }), () => ({ name, replicas: 0 }))));
          const old = counts.reduce((n, c) => n + c.replicas, 0);
          const ds = status.applications[app.name]?.deployments[d.name];
          const target = ds?.targetReplicas ?? 0;
          const running = ds?.replicas.filter((r) => r.state === "RUNNING").length ?? 0;
          const { linked, idle } = this.#remote!.linkedOf(app.name, d.name);
          const now = performance.now();
          if (running < target && idle === 0) state.starvedSince ||= now;
          else state.starvedSince = 0;
          // The old pod let go last must have left before the next goes.
          if (state.linkedAtLower !== null && linked >= state.linkedAtLower) continue;
          state.linkedAtLower = null;
          const oldServes = previous.every((p) => this.eligible(app.name, d.name, p.slice(this.engine.kubeName(app.name, d.name).length + 1)));
          const step = rolloverStep({ target, running, idle, old, starvedMs: state.starvedSince ? now - state.starvedSince : 0, oldServes });
          this.engine.setCap(app.name, d.name, old === 0 ? undefined : step.cap);
          if (old === 0) {
            state.done = true;
            this.log(`serve-bin: ${key} runs on its current revision ${this.engine.deploymentName(app.name, d.name)} only`);
            continue;
          }
          if (!step.lowerOld) continue;
          if (!oldServes) {
            for (const c of counts) if (c.replicas > 0) await this.client.scale(c.name, 0, "exactly");
            state.done = true;
            this.engine.setCap(app.name, d.name, undefined);
            this.log(`serve-bin: ${key}: previous revisions run other code and can serve nothing here; down to 0 (${counts.map((c) => c.name).join(", ")})`);
            continue;
          }
          const from = counts.find((c) => c.replicas > 0)!;
          await this.client.scale(from.name, from.replicas - 1, "exactly");
          state.linkedAtLower = linked;
          state.starvedSince = 0;
          this.log(`serve-bin: ${key}: previous revision ${from.name} down to ${from.replicas - 1} (${idle} new pod${idle === 1 ? "" : "s"} waiting)`);
        }
      }
    } catch (e) {
      this.log(`serve-bin: rollover step failed (will try again): ${(e as Error).message}`);
    } finally {
      this.#stepping = false;
    }
  }

  #logListed(sets: ReplicaSet[]): void {
    const line = sets.map((s) => `${s.app}/${s.deployment} ${s.addresses.length}`).join(", ");
    if (line === this.#listed) return;
    this.#listed = line;
    this.log(`serve-bin: Kubernetes lists ready replicas: ${line}`);
  }

  #syncDeployments(): void {
    const config = this.#server!.changes.current.config;
    const deployments: KubeDeployment[] = this.#server!.appliedConfig().applications.flatMap((a) =>
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
    const state = readFileSync(file, "utf8");
    // The first config that served is the one the ConfigMap was built or last written with.
    if (this.#savedState === null) this.#savedState = state;
    if (state === this.#savedState) return;
    this.#saving = true;
    const yaml = this.#yamlOf((JSON.parse(state) as { config: ServeConfig }).config);
    this.engine.saveConfig(yaml).then(
      () => {
        this.#savedState = state;
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
    if (this.#rollover) clearInterval(this.#rollover);
    await this.engine.stop();
  }
}
