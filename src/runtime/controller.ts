import { ServeError, type SerializedServeError } from "../error.ts";
import { deepEqual, mergeDeploymentPatch } from "../config/diff.ts";
import type { DeploymentConfig, DeploymentPatch, SharedMemoryConfig } from "../config/schema.ts";
import type { ControlFromReplica, RoutingTable } from "./channel/messages.ts";
import type { PlannedApp } from "./plan-app.ts";
import { RemoteInvoker } from "./remote-invoker.ts";
import { processSharedMemory } from "./channel/shm-channel.ts";
import { ReplicaRecord } from "./replica-state.ts";
import type { RunDir } from "./run-dir.ts";
import type { Supervisor } from "./supervisor.ts";
import { decideReplicas } from "./autoscale.ts";
import {
  MAX_START_FAILURES,
  appStatus,
  statusJSON,
  targetReplicas,
  type AppRuntime,
  type AppStatus,
  type ControllerEvent,
  type DeploymentRuntime,
  type StatusJSON,
} from "./app-state.ts";

export type { AppStatus, ControllerEvent, DeploymentStatus, StatusJSON } from "./app-state.ts";

/** How often health checks and the autoscaler look. */
const TICK_MS = 250;

export interface ControllerOptions {
  supervisor: Supervisor;
  runDir: RunDir;
  sharedMemory: SharedMemoryConfig & { dir: string };
  onEvent?: (e: ControllerEvent) => void;
}

/**
 * Holds the target state (the applications and their deployment configs) and
 * moves the actual state (replica processes) toward it, one `reconcile()`
 * step at a time. Every change — start-up, PATCH, PUT, a dead replica, a
 * health-check failure, autoscaling — is a new target followed by reconcile.
 */
export class Controller {
  readonly apps = new Map<string, AppRuntime>();
  readonly #waiters = new Set<() => void>();
  readonly #replies = new Map<number, (error?: SerializedServeError) => void>();
  #seq = 1;
  #socketN = 0;
  /** userConfig changes run one at a time, each with its rollback. */
  #userConfigQueue: Promise<unknown> = Promise.resolve();
  #scheduled = false;
  #stopped = false;
  readonly #tick: ReturnType<typeof setInterval>;

  constructor(readonly opts: ControllerOptions) {
    this.#tick = setInterval(() => this.#onTick(), TICK_MS);
  }

  // ---------------------------------------------------------------- targets

  /** Adds or updates an application. Unchanged deployments keep their replicas. */
  setApp(planned: PlannedApp): void {
    const name = planned.config.name;
    let app = this.apps.get(name);
    if (!app) {
      app = { planned, status: "DEPLOYING", message: "", everRunning: false, deleting: false, deployments: new Map(), invoker: new RemoteInvoker(processSharedMemory(this.opts.sharedMemory)), tableVersion: 0, tableSig: "" };
      this.apps.set(name, app);
    }
    app.planned = planned;
    app.message = ""; // a new target supersedes what the last refused change said
    const wanted = new Set<string>();
    for (const cfg of planned.config.deployments) {
      wanted.add(cfg.name);
      const version = versionOf(planned, cfg);
      const d = app.deployments.get(cfg.name);
      if (!d) {
        app.deployments.set(cfg.name, {
          name: cfg.name,
          config: cfg,
          version,
          replicas: [],
          userConfigGen: 0,
          failures: 0,
          lastError: null,
          nextStartAt: 0,
          deadSlots: [],
          nextIndex: 0,
          autoscale: { desired: null, since: 0 },
          removed: false,
        });
        continue;
      }
      d.removed = false;
      if (d.version !== version) {
        d.version = version;
        d.failures = 0;
      }
      const userConfigChanged = !deepEqual(d.config.userConfig, cfg.userConfig);
      if (userConfigChanged) d.userConfigGen++;
      d.config = cfg;
      // Normally reconfigureFor() has already done this; this path only makes sure no replica stays behind.
      if (userConfigChanged) for (const r of d.replicas) if (r.serving && r.version === d.version) void this.#catchUp(app, d, r);
      this.#pushLimits(app, d);
    }
    for (const [name, d] of app.deployments) if (!wanted.has(name)) d.removed = true;
    this.#refreshStatus(app);
    this.reconcile();
  }

  /** Removes an application gracefully: its replicas drain and stop. */
  async removeApp(name: string): Promise<void> {
    const app = this.#app(name);
    app.deleting = true;
    app.status = "DELETING";
    for (const d of app.deployments.values()) d.config = { ...d.config, numReplicas: 0, autoscalingConfig: undefined };
    this.reconcile();
    await this.waitFor(() => [...app.deployments.values()].every((d) => d.replicas.length === 0));
    app.invoker.close();
    this.apps.delete(name);
  }

  /**
   * A live change of one deployment. userConfig runs `reconfigure()` on every
   * live replica first; if any throws, the ones changed go back and the PATCH
   * fails with the user's error. Other fields update the target.
   */
  async patchDeployment(appName: string, name: string, patch: DeploymentPatch): Promise<DeploymentConfig> {
    const app = this.#app(appName);
    const d = this.#deployment(app, name);
    mergeDeploymentPatch(d.config, patch); // invalid: refused before anything waits or changes
    return this.#oneAtATime(async () => {
      const next = mergeDeploymentPatch(d.config, patch);
      if (!deepEqual(next.userConfig, d.config.userConfig)) await this.#changeUserConfig(app, d, next.userConfig);
      const limitsChanged = next.maxOngoingRequests !== d.config.maxOngoingRequests || next.maxQueuedRequests !== d.config.maxQueuedRequests;
      d.config = next;
      app.message = "";
      // A new replica count restarts the autoscaler from it; new bounds only clamp what it decided (targetReplicas).
      if (patch.numReplicas !== undefined) d.autoscale = { desired: null, since: 0 };
      if (limitsChanged) this.#pushLimits(app, d);
      app.planned.config.deployments = app.planned.config.deployments.map((c) => (c.name === name ? next : c));
      this.#refreshStatus(app);
      this.reconcile();
      return next;
    });
  }

  /**
   * Before a whole config (PUT, deploy) takes effect: runs `reconfigure()` in
   * place on every deployment whose userConfig changes and whose replicas stay
   * (same code and env). All or nothing: if one refuses, the deployments
   * already changed go back and this throws the user's error.
   */
  async reconfigureFor(planned: readonly PlannedApp[]): Promise<void> {
    await this.#oneAtATime(async () => {
      const done: { app: AppRuntime; d: DeploymentRuntime; previous: unknown }[] = [];
      try {
        for (const p of planned) {
          const app = this.apps.get(p.config.name);
          if (!app || app.deleting) continue;
          for (const cfg of p.config.deployments) {
            const d = app.deployments.get(cfg.name);
            if (!d || d.version !== versionOf(p, cfg) || deepEqual(d.config.userConfig, cfg.userConfig)) continue;
            const previous = d.config.userConfig;
            await this.#changeUserConfig(app, d, cfg.userConfig);
            done.push({ app, d, previous });
          }
        }
      } catch (e) {
        for (const { app, d, previous } of done.reverse()) await this.#changeUserConfig(app, d, previous).catch(() => {});
        throw e;
      }
    });
  }

  #oneAtATime<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#userConfigQueue.then(fn, fn);
    this.#userConfigQueue = run.catch(() => {});
    return run;
  }

  /**
   * Sets a deployment's userConfig and runs `reconfigure()` on each serving
   * replica. The target changes first, so a replica that starts meanwhile
   * gets the new one. If any replica throws, the target goes back and every
   * serving replica is sent the previous userConfig — the one that threw too,
   * since it may have changed part of its state before throwing; a replica
   * that cannot go back is replaced.
   */
  async #changeUserConfig(app: AppRuntime, d: DeploymentRuntime, userConfig: unknown): Promise<void> {
    const previous = d.config.userConfig;
    d.config = { ...d.config, userConfig };
    const gen = ++d.userConfigGen;
    const live = d.replicas.filter((r) => r.serving && r.version === d.version);
    const results = await Promise.all(live.map((r) => this.#reconfigure(app, r, userConfig, gen, (d.config.healthCheckTimeoutS + 30) * 1000)));
    const failed = results.findIndex((e) => e !== undefined);
    if (failed < 0) {
      app.message = "";
      this.reconcile();
      return;
    }
    d.config = { ...d.config, userConfig: previous };
    const back = ++d.userConfigGen;
    const serving = d.replicas.filter((r) => r.serving && r.version === d.version);
    const undone = await Promise.all(serving.map((r) => this.#reconfigure(app, r, previous, back, 30_000)));
    serving.forEach((r, i) => undone[i] && this.#replace(app, d, r, `it could not go back to the previous userConfig: ${undone[i]!.message}`));
    const err = results[failed]!;
    const who = live[failed]!.id;
    app.message = `reconfigure of ${d.name} failed on replica ${who} and was rolled back: ${err.message}`;
    this.#refreshStatus(app);
    this.reconcile();
    throw new ServeError("user", `reconfigure() of ${d.name} failed on replica ${who}; the change was rolled back on every replica: ${err.message}`, {
      deployment: d.name,
      causeName: err.causeName,
      causeStack: err.stack,
    });
  }

  /** One replica's reconfigure(): UPDATING meanwhile; records the generation it now runs. */
  async #reconfigure(app: AppRuntime, r: ReplicaRecord, userConfig: unknown, gen: number, timeoutMs: number): Promise<SerializedServeError | undefined> {
    if (r.state === "RUNNING") r.to("UPDATING");
    this.#refreshStatus(app);
    const err = await this.#request(r, (seq) => ({ t: "reconfigure", seq, userConfig }), timeoutMs);
    if (!err) r.userConfigGen = gen;
    if (r.state === "UPDATING") r.to("RUNNING");
    return err;
  }

  /** Brings a replica that started before a userConfig change to the current one. */
  async #catchUp(app: AppRuntime, d: DeploymentRuntime, r: ReplicaRecord): Promise<void> {
    while (r.serving && r.userConfigGen !== d.userConfigGen) {
      const err = await this.#reconfigure(app, r, d.config.userConfig, d.userConfigGen, 60_000);
      if (err) return this.#replace(app, d, r, `reconfigure failed: ${err.message}`);
    }
    this.reconcile();
  }

  // ---------------------------------------------------------------- reconcile

  /** Schedules one reconcile pass (coalesced). */
  reconcile(): void {
    if (this.#scheduled || this.#stopped) return;
    this.#scheduled = true;
    queueMicrotask(() => {
      this.#scheduled = false;
      this.#step();
    });
  }

  /** One pass over every deployment: (1) replace, (2) scale, (3) roll, (4) publish routes, (5) status. */
  #step(): void {
    const now = Date.now();
    for (const app of this.apps.values()) {
      // (1) a deployment the new code no longer has keeps serving the old code's replicas (draining ones too) until none is left
      const oldCodeLeft = [...app.deployments.values()].some((d) => !d.removed && d.replicas.some((r) => r.version !== d.version));
      for (const d of app.deployments.values()) {
        if (d.removed && !oldCodeLeft) d.config = { ...d.config, numReplicas: 0, autoscalingConfig: undefined };
        if (d.removed && !oldCodeLeft && d.replicas.length === 0) {
          app.deployments.delete(d.name);
          continue;
        }
        const target = targetReplicas(d);
        const current = d.replicas.filter((r) => r.version === d.version && r.state !== "STOPPING");
        const old = d.replicas.filter((r) => r.version !== d.version && r.state !== "STOPPING");
        // (2) start what is missing, after a backoff when starts keep failing
        for (let n = current.length; n < target && now >= d.nextStartAt; n++) this.#start(app, d);
        // (3) rolling update: an old replica stops only when a new one serves in its place
        const newServing = current.filter((r) => r.serving).length;
        let excessOld = old.length + newServing - target;
        for (const r of [...old].sort(startingFirst)) if (excessOld-- > 0) this.#stop(app, d, r);
        // (2) scale down: starting ones first, then the least busy
        const extra = current.length - target;
        if (extra > 0) for (const r of [...current].sort(startingFirst).slice(0, extra)) this.#stop(app, d, r);
      }
      this.#publishRoutes(app);
      this.#refreshStatus(app);
    }
    for (const w of [...this.#waiters]) w();
  }

  #start(app: AppRuntime, d: DeploymentRuntime): void {
    const slot = d.deadSlots.shift();
    const id = slot?.id ?? `${d.name}#${d.nextIndex++}`;
    const socket = this.opts.runDir.socketPath(`r${++this.#socketN}`);
    const p = app.planned;
    const spec = {
      app: p.config.name,
      deployment: d.name,
      replicaId: id,
      modulePath: p.modulePath,
      exportName: p.exportName,
      hash: p.graph.ir.hash,
      socket,
      userConfig: d.config.userConfig,
      maxOngoingRequests: d.config.maxOngoingRequests,
      sharedMemory: this.opts.sharedMemory,
    };
    let record!: ReplicaRecord;
    const proc = this.opts.supervisor.spawn(spec, d.config.env ?? {}, {
      message: (msg) => this.#onReplicaMessage(app, d, record, msg),
      exit: (code, signal) => this.#onExit(app, d, record, code, signal),
    });
    record = new ReplicaRecord(id, d.version, socket, proc, slot ? slot.restarts + 1 : 0, d.userConfigGen);
    d.replicas.push(record);
    this.#emit({ app: app.planned.config.name, deployment: d.name, replica: id, kind: "replica-starting" });
  }

  #stop(app: AppRuntime, d: DeploymentRuntime, r: ReplicaRecord): void {
    if (r.state === "STOPPING") return;
    const wasStarting = r.state === "STARTING";
    r.to("STOPPING");
    this.#publishRoutes(app);
    if (wasStarting) return r.proc.kill("SIGKILL");
    r.proc.send({ t: "drain", timeoutS: d.config.gracefulShutdownTimeoutS });
    const hard = setTimeout(() => r.proc.kill("SIGKILL"), (d.config.gracefulShutdownTimeoutS + 2) * 1000);
    void r.proc.exited.then(() => clearTimeout(hard));
  }

  #onReplicaMessage(app: AppRuntime, d: DeploymentRuntime, r: ReplicaRecord, msg: ControlFromReplica): void {
    switch (msg.t) {
      case "ready":
        if (r.state !== "STARTING") return;
        r.to("RUNNING");
        r.lastHealthAt = Date.now();
        d.failures = 0;
        d.lastError = null;
        r.proc.send({ t: "routes", table: this.#table(app) });
        if (r.userConfigGen !== d.userConfigGen) void this.#catchUp(app, d, r);
        this.#emit({ app: app.planned.config.name, deployment: d.name, replica: r.id, kind: "replica-running" });
        this.reconcile();
        return;
      case "failed":
        d.failures++;
        d.lastError = msg.error;
        d.nextStartAt = Date.now() + Math.min(100 * 2 ** d.failures, 5000);
        this.#emit({ app: app.planned.config.name, deployment: d.name, replica: r.id, kind: "replica-failed", message: msg.error.message, stack: msg.error.stack });
        return;
      case "done":
        this.#replies.get(msg.seq)?.(msg.error);
        return;
      case "load":
        r.ongoing = msg.ongoing;
        return;
      case "drained":
        return;
    }
  }

  #onExit(app: AppRuntime, d: DeploymentRuntime, r: ReplicaRecord, code: number, signal: string | null): void {
    d.replicas = d.replicas.filter((x) => x !== r);
    if (r.state === "STOPPING") {
      this.#emit({ app: app.planned.config.name, deployment: d.name, replica: r.id, kind: "replica-stopped" });
    } else {
      d.deadSlots.push({ id: r.id, restarts: r.restarts });
      this.#emit({ app: app.planned.config.name, deployment: d.name, replica: r.id, kind: "replica-died", message: `exit ${signal ?? code}` });
    }
    this.reconcile();
  }

  /**
   * Replaces a replica that is unhealthy or stuck on an old userConfig: its
   * replacement takes its id (restarts + 1) at once, while it drains — or is
   * killed, when it no longer answers at all.
   */
  #replace(app: AppRuntime, d: DeploymentRuntime, r: ReplicaRecord, why: string, hung = false): void {
    // Already stopping, or already gone (its exit was counted as a death).
    if (r.state === "STOPPING" || !d.replicas.includes(r)) return;
    d.deadSlots.push({ id: r.id, restarts: r.restarts });
    this.#emit({ app: app.planned.config.name, deployment: d.name, replica: r.id, kind: "replica-replaced", message: why });
    if (hung) {
      r.to("STOPPING");
      this.#publishRoutes(app);
      r.proc.kill("SIGKILL");
    } else this.#stop(app, d, r);
    this.reconcile();
  }

  /** Sends a request on the control channel and resolves with its error, if any. */
  #request(r: ReplicaRecord, make: (seq: number) => Parameters<ReplicaRecord["proc"]["send"]>[0], timeoutMs: number): Promise<SerializedServeError | undefined> {
    const seq = this.#seq++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => done({ code: "timeout", message: `replica ${r.id} did not answer within ${timeoutMs / 1000} s` }), timeoutMs);
      const done = (error?: SerializedServeError) => {
        clearTimeout(timer);
        this.#replies.delete(seq);
        resolve(error);
      };
      this.#replies.set(seq, done);
      void r.proc.exited.then(() => done({ code: "unavailable", message: `replica ${r.id} exited` }));
      r.proc.send(make(seq));
    });
  }

  // ---------------------------------------------------------------- routes

  #table(app: AppRuntime): RoutingTable {
    const deployments: RoutingTable["deployments"] = {};
    for (const d of app.deployments.values()) {
      deployments[d.name] = {
        replicas: d.replicas.filter((r) => r.serving).map((r) => ({ id: `${r.id}@${r.socket}`, socket: r.socket })),
        maxOngoingRequests: d.config.maxOngoingRequests,
        maxQueuedRequests: d.config.maxQueuedRequests,
      };
    }
    return { version: app.tableVersion, deployments };
  }

  /** Sends a new snapshot to every replica of the app and to this process's router, when it changed. */
  #publishRoutes(app: AppRuntime): void {
    const sig = JSON.stringify(this.#table({ ...app, tableVersion: 0 }));
    if (sig === app.tableSig) return;
    app.tableSig = sig;
    app.tableVersion++;
    const table = this.#table(app);
    app.invoker.update(table);
    for (const d of app.deployments.values()) for (const r of d.replicas) if (r.serving) r.proc.send({ t: "routes", table });
  }

  #pushLimits(app: AppRuntime, d: DeploymentRuntime): void {
    for (const r of d.replicas) r.proc.send({ t: "limits", maxOngoingRequests: d.config.maxOngoingRequests });
    app.tableSig = "";
  }

  // ---------------------------------------------------------------- health, autoscaling

  #onTick(): void {
    const now = Date.now();
    for (const app of this.apps.values()) {
      for (const d of app.deployments.values()) {
        for (const r of d.replicas) {
          if (r.state !== "RUNNING") continue;
          if (r.healthPendingSince === 0 && now - r.lastHealthAt >= d.config.healthCheckPeriodS * 1000) {
            r.healthPendingSince = now;
            void this.#request(r, (seq) => ({ t: "health", seq }), d.config.healthCheckTimeoutS * 1000).then((err) => {
              r.healthPendingSince = 0;
              r.lastHealthAt = Date.now();
              if (err && r.state !== "STOPPING") this.#replace(app, d, r, `health check failed: ${err.message}`, err.code === "timeout" || err.code === "unavailable");
            });
          }
        }
        if (d.config.autoscalingConfig && !app.deleting) {
          const next = decideReplicas(d.config.autoscalingConfig, d.replicas.filter((r) => r.serving), targetReplicas(d), d.autoscale, now);
          if (next !== null) d.autoscale.desired = next;
        }
      }
    }
    this.reconcile();
  }

  // ---------------------------------------------------------------- status

  #refreshStatus(app: AppRuntime): void {
    const before = app.status;
    Object.assign(app, appStatus(app));
    if (app.status === "RUNNING") app.everRunning = true;
    if (before !== app.status) this.#emit({ app: app.planned.config.name, kind: "app-status", message: app.status });
  }

  status(): StatusJSON {
    return statusJSON(this.apps);
  }

  // ---------------------------------------------------------------- waiting, lookup, shutdown

  /** Resolves once `pred` holds after a reconcile pass. */
  waitFor(pred: () => boolean, timeoutMs = 600_000): Promise<void> {
    if (pred()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!pred()) return;
        this.#waiters.delete(check);
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new ServeError("timeout", `the change did not finish within ${timeoutMs / 1000} s; see serve-bin status`));
      }, timeoutMs);
      this.#waiters.add(check);
    });
  }

  /** Waits until the app serves (RUNNING) or cannot (DEPLOY_FAILED / UNHEALTHY); returns its status. */
  async settle(name: string): Promise<AppStatus> {
    const app = this.#app(name);
    await this.waitFor(() => app.status === "RUNNING" || app.status === "DEPLOY_FAILED" || (app.status === "UNHEALTHY" && [...app.deployments.values()].some((d) => d.failures >= MAX_START_FAILURES)));
    return app.status;
  }

  invoker(app: string): RemoteInvoker | undefined {
    return this.apps.get(app)?.invoker;
  }

  #app(name: string): AppRuntime {
    const app = this.apps.get(name);
    if (!app) throw new ServeError("not_found", `no application "${name}"; applications: ${[...this.apps.keys()].join(", ") || "(none)"}`);
    return app;
  }

  #deployment(app: AppRuntime, name: string): DeploymentRuntime {
    const d = app.deployments.get(name);
    if (!d) throw new ServeError("not_found", `application ${app.planned.config.name} has no deployment "${name}"; it has ${[...app.deployments.keys()].join(", ")}`);
    return d;
  }

  #emit(e: ControllerEvent): void {
    this.opts.onEvent?.(e);
  }

  /** Drains every replica (ingress first is not needed: the proxy has stopped taking requests). */
  async shutdown(timeoutS: number): Promise<void> {
    for (const app of this.apps.values()) {
      app.deleting = true;
      for (const d of app.deployments.values()) d.config = { ...d.config, numReplicas: 0, autoscalingConfig: undefined };
    }
    this.#step();
    const all = () => [...this.apps.values()].flatMap((a) => [...a.deployments.values()].flatMap((d) => d.replicas));
    const deadline = Bun.sleep(timeoutS * 1000).then(() => "late" as const);
    const done = Promise.all(all().map((r) => r.proc.exited)).then(() => "done" as const);
    if ((await Promise.race([done, deadline])) === "late") for (const r of all()) r.proc.kill("SIGKILL");
    await Promise.all(all().map((r) => r.proc.exited));
    this.#stopped = true;
    clearInterval(this.#tick);
    for (const app of this.apps.values()) app.invoker.close();
  }
}

/** Replicas of a deployment are replaced (rolling) when this changes: the code, the graph, the env. */
function versionOf(planned: PlannedApp, cfg: DeploymentConfig): string {
  return `${planned.codeVersion}|${JSON.stringify(cfg.env)}`;
}

function startingFirst(a: ReplicaRecord, b: ReplicaRecord): number {
  const rank = (r: ReplicaRecord) => (r.state === "STARTING" ? 0 : 1);
  return rank(a) - rank(b) || a.ongoing - b.ongoing;
}
