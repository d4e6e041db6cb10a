import { ServeError } from "../../error.ts";
import { LIMITS_DEFAULTS, type DeploymentConfig, type LimitsConfig, type SharedMemoryConfig } from "../../config/schema.ts";
import { deepEqual } from "../../config/diff.ts";
import type { ControlFromReplica, DataPlaneListen, ProxySnapshot, RoutingTable } from "../channel/messages.ts";
import { processSharedMemory } from "../channel/shm-channel.ts";
import { colocatedOf, type PlannedApp } from "../plan-app.ts";
import type { MetricsStore } from "../metrics/store.ts";
import { RemoteInvoker } from "../remote-invoker.ts";
import type { RunDir } from "../run-dir.ts";
import { decideReplicas } from "../autoscale.ts";
import { DeploymentState, UNHEALTHY_AFTER_START_FAILURES, type Decision, type ReplicaView } from "./deployment-state.ts";
import { describeExit, type Engine } from "./engine.ts";
import { ReplicaControl } from "./replica-control.ts";
import { appStatus, statusJSON, type AppStatus, type AppView, type ControllerEvent, type StatusJSON } from "./status.ts";
import { catchUp, changeUserConfig, type ReconfigureScope } from "./user-config.ts";
import { unrefSleep } from "../unref-sleep.ts";

/** How often health checks, backoff timers and the autoscaler look. */
const TICK_MS = 250;

export interface ControllerOptions {
  engine: Engine;
  runDir: RunDir;
  sharedMemory: SharedMemoryConfig & { dir: string };
  onEvent?: (e: ControllerEvent) => void;
  /** Takes each replica's metrics snapshot. */
  metrics?: MetricsStore;
  /** Writes a replica's JSON log line. */
  replicaLog?: (line: string) => void;
  /** Each new routing snapshot of an application, for processes the engine runs elsewhere (proxies on other hosts). */
  onRoutes?: (app: string, table: RoutingTable) => void;
  /** proxy.location "ingress": where ingress replicas listen on the data-plane port themselves (undefined: they do not). */
  ingressListen?: () => DataPlaneListen | undefined;
  /** The number of ingress replicas whose data-plane listener is open, each time it changes. */
  onListeners?: (n: number) => void;
}

/** One application as the loop holds it. */
export interface AppRuntime extends AppView {
  planned: PlannedApp;
  status: AppStatus;
  message: string;
  deployments: Map<string, DeploymentState>;
  invoker: RemoteInvoker;
  tableVersion: number;
  tableSig: string;
  /** Route ids of this app's replicas whose link went silent, newest last (at most GONE_KEPT): see RoutingTable.gone. */
  gone: string[];
}

/** How many replicas whose link went silent a routing table names. */
const GONE_KEPT = 32;

/** A replica's process and what the loop tracks of it beside the state machine. */
interface Live {
  control: ReplicaControl;
  socket: string;
  lastHealthAt: number;
  healthPending: boolean;
  /** An ingress replica told to listen on the data-plane port, and whether its listener is open now. */
  listens: boolean;
  listening: boolean;
}

/**
 * The thin loop: holds each application's deployment state machines, ticks
 * them (`reconcile()` → `decide()`), and carries out their decisions through
 * the engine and each replica's control channel. Everything that changes a
 * target — start-up, PUT, deploy, PATCH, autoscaling — ends in `setApp` or
 * `changeUserConfig`, followed by a reconcile.
 */
export class Controller {
  readonly apps = new Map<string, AppRuntime>();
  #limits: LimitsConfig = { ...LIMITS_DEFAULTS };
  readonly #live = new Map<ReplicaView, Live>();
  readonly #waiters = new Set<() => void>();
  #socketN = 0;
  /** The routes ingress listeners route by (pushProxySnapshot), sent to each one that starts. */
  #proxySnapshot: ProxySnapshot | null = null;
  #listeners = 0;
  #scheduled = false;
  #stopped = false;
  readonly #tick: ReturnType<typeof setInterval>;

  constructor(readonly opts: ControllerOptions) {
    this.#tick = setInterval(() => this.#onTick(), TICK_MS);
  }

  set limits(limits: LimitsConfig) {
    this.#limits = limits;
    this.reconcile();
  }

  get limits(): LimitsConfig {
    return this.#limits;
  }

  // ---------------------------------------------------------------- targets

  /** Adds or updates an application's target. Unchanged deployments keep their replicas. */
  setApp(planned: PlannedApp): void {
    const name = planned.config.name;
    let app = this.apps.get(name);
    if (!app) {
      app = {
        name,
        routePrefix: planned.config.routePrefix,
        planned,
        status: "DEPLOYING",
        message: "",
        note: "",
        everRunning: false,
        deleting: false,
        deployments: new Map(),
        invoker: new RemoteInvoker(processSharedMemory(this.opts.sharedMemory)),
        tableVersion: 0,
        tableSig: "",
        gone: [],
      };
      this.apps.set(name, app);
    }
    app.planned = planned;
    app.routePrefix = planned.config.routePrefix;
    app.note = ""; // a new target supersedes what the last refused change said
    const wanted = new Set<string>();
    for (const written of planned.config.deployments) {
      const cfg = ownReplicas(written);
      wanted.add(cfg.name);
      const version = versionOf(planned, cfg);
      const d = app.deployments.get(cfg.name);
      if (!d) {
        app.deployments.set(cfg.name, new DeploymentState(cfg.name, cfg, version, () => this.#limits));
        continue;
      }
      d.removed = false;
      const limitsChanged = cfg.maxOngoingRequests !== d.config.maxOngoingRequests || cfg.maxQueuedRequests !== d.config.maxQueuedRequests;
      if (cfg.numReplicas !== d.config.numReplicas) d.autoscale = { desired: null, since: 0 }; // a new count restarts the autoscaler from it
      const userConfigChanged = !deepEqual(d.config.userConfig, cfg.userConfig);
      if (userConfigChanged) d.userConfigGen++;
      d.setTarget(cfg, version);
      // Normally changeUserConfig() has run first; this makes sure no replica stays behind.
      if (userConfigChanged) for (const r of d.serving()) if (r.version === d.version) void catchUp(this.#scope(app, d), r);
      if (limitsChanged) this.#pushLimits(app, d);
    }
    for (const [n, d] of app.deployments) if (!wanted.has(n)) d.removed = true;
    this.#refreshStatus(app);
    this.reconcile();
  }

  /**
   * Holds a deployment's target at most `ceiling` replicas (undefined: lifts
   * it) without changing its config: replicas above it drain and stop as on
   * a scale-down. A Kubernetes rollout moves a deployment between revisions
   * with it.
   */
  setCeiling(appName: string, name: string, ceiling: number | undefined): void {
    const d = this.apps.get(appName)?.deployments.get(name);
    if (!d || d.ceiling === ceiling) return;
    d.ceiling = ceiling;
    this.reconcile();
  }

  /** Removes an application gracefully: its replicas drain and stop. */
  async removeApp(name: string): Promise<void> {
    const app = this.#app(name);
    app.deleting = true;
    for (const d of app.deployments.values()) d.setTarget({ ...d.config, numReplicas: 0, autoscalingConfig: undefined }, d.version);
    this.#refreshStatus(app);
    this.reconcile();
    await this.waitFor(() => [...app.deployments.values()].every((d) => d.replicas.size === 0));
    app.invoker.close();
    this.apps.delete(name);
    this.opts.metrics?.forgetApp(name);
  }

  /**
   * Runs `reconfigure()` on every live replica of one deployment, all or
   * nothing (see user-config.ts). The caller serialises changes.
   */
  changeUserConfig(appName: string, name: string, userConfig: unknown): Promise<void> {
    const app = this.#app(appName);
    const d = this.deployment(app, name);
    return changeUserConfig(this.#scope(app, d), userConfig);
  }

  #scope(app: AppRuntime, d: DeploymentState): ReconfigureScope {
    return {
      deployment: d,
      control: (r) => this.#live.get(r)?.control,
      replace: (r, why) => this.#replace(app, d, r, why),
      changed: () => {
        this.#refreshStatus(app);
        this.reconcile();
      },
      refused: (note) => {
        app.note = note;
      },
    };
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

  /**
   * One pass: (1) removed deployments wind down once no old code calls them,
   * (2) each state machine decides, within the budget of starts at once,
   * (3) the decisions are carried out, (4) routes published, (5) status.
   */
  #step(): void {
    const now = Date.now();
    let budget = this.#limits.maxConcurrentStarts - this.#starting();
    for (const app of this.apps.values()) {
      const oldCodeLeft = [...app.deployments.values()].some((d) => !d.removed && [...d.replicas.values()].some((r) => r.version !== d.version));
      for (const d of [...app.deployments.values()]) {
        if (d.removed && !oldCodeLeft) {
          if (d.replicas.size === 0) {
            app.deployments.delete(d.name);
            continue;
          }
          if (d.target() !== 0) d.setTarget({ ...d.config, numReplicas: 0, autoscalingConfig: undefined }, d.version);
        }
        const decisions = d.decide(now, Math.max(0, budget));
        for (const decision of decisions) {
          if (decision.kind === "start") budget--;
          this.#carryOut(app, d, decision, now);
        }
      }
      this.#publishRoutes(app);
      this.#refreshStatus(app);
    }
    for (const w of [...this.#waiters]) w();
  }

  #starting(): number {
    let n = 0;
    for (const r of this.#live.keys()) if (r.state === "STARTING") n++;
    return n;
  }

  #carryOut(app: AppRuntime, d: DeploymentState, decision: Decision, now: number): void {
    if (decision.kind === "start") return this.#start(app, d, decision, now);
    const r = [...d.replicas.values()].find((x) => x.key === decision.key);
    if (r) this.#live.get(r)?.control.stop(decision.graceful, d.config.gracefulShutdownTimeoutS);
  }

  #start(app: AppRuntime, d: DeploymentState, decision: Extract<Decision, { kind: "start" }>, now: number): void {
    const socket = this.opts.runDir.socketPath(`r${++this.#socketN}`);
    const p = app.planned;
    const view = d.started(decision, now);
    const spec = {
      app: p.config.name,
      deployment: d.name,
      replicaId: decision.id,
      modulePath: p.modulePath,
      exportName: p.exportName,
      hash: p.graph.hash,
      fileHash: p.fileHash,
      socket,
      userConfig: d.config.userConfig,
      maxOngoingRequests: d.config.maxOngoingRequests,
      sharedMemory: this.opts.sharedMemory,
      colocated: colocatedOf(p.config.deployments),
      listen: d.name === p.graph.ingress ? this.opts.ingressListen?.() : undefined,
    };
    const proc = this.opts.engine.start(spec, d.config.env ?? {}, {
      message: (msg) => this.#onMessage(app, d, view, msg),
      exit: (info) => {
        const ended = this.#live.get(view);
        const wasListening = ended?.listening;
        this.#live.delete(view);
        // Only a replica whose link went silent: one that exited closed its data links itself, and one that drained
        // (on Kubernetes its claim ends before its process does) still answers what it took.
        if (ended && info.silent) {
          app.gone.push(`${view.id}@${ended.socket}`);
          if (app.gone.length > GONE_KEPT) app.gone.shift();
        }
        if (wasListening) this.#countListeners();
        const asked = view.state === "STOPPING";
        if (info.evicted && !asked) {
          d.evicted(view.key);
          this.#emit(app, d, view, "replica-replaced", "its engine stopped it (Kubernetes deleted its pod, or Swarm moved its task); a replacement starts now");
          return this.reconcile();
        }
        const how = describeExit(info);
        const at = Date.now();
        d.exited(view.key, at, how);
        const waitS = d.backoffS(at);
        if (asked) this.#emit(app, d, view, "replica-stopped");
        else this.#emit(app, d, view, "replica-died", `${how}; restarting${waitS > 0 ? ` in ${waitS.toFixed(1)} s` : ""}`);
        this.reconcile();
      },
    });
    const live: Live = { control: new ReplicaControl(proc, decision.id), socket, lastHealthAt: now, healthPending: false, listens: spec.listen !== undefined, listening: false };
    this.#live.set(view, live);
    // Sent at start: the replica opens its listener after warmUp(), before "ready".
    if (live.listens && this.#proxySnapshot) live.control.proxyRoutes(this.#proxySnapshot);
    this.#emit(app, d, view, "replica-starting");
  }

  #onMessage(app: AppRuntime, d: DeploymentState, r: ReplicaView, msg: ControlFromReplica): void {
    const live = this.#live.get(r);
    if (!live) return;
    switch (msg.t) {
      case "ready":
        if (r.state !== "STARTING") return;
        d.ready(r.key, Date.now());
        // The address the replica bound (a TCP port it picked, a task's address) is what callers dial.
        live.socket = msg.socket;
        live.lastHealthAt = Date.now();
        live.control.routes(this.#table(app));
        if (r.userConfigGen !== d.userConfigGen) void catchUp(this.#scope(app, d), r);
        this.#emit(app, d, r, "replica-running");
        this.reconcile();
        return;
      case "failed":
        d.failed({ message: msg.error.message, stack: msg.error.stack });
        this.#emit(app, d, r, "replica-failed", msg.error.message, msg.error.stack);
        return;
      case "done":
        return live.control.answered(msg.seq, msg.error);
      case "load":
        r.ongoing = msg.ongoing;
        return;
      case "metrics": {
        r.ongoing = msg.snapshot.ongoing;
        this.opts.metrics?.ingest(app.name, d.name, r.id, msg.snapshot);
        const limit = this.#limits.maxReplicaMemoryBytes;
        if (msg.snapshot.rssBytes > limit && r.state !== "STOPPING") {
          const why = `replica ${r.id} held ${mib(msg.snapshot.rssBytes)} of resident memory, over limits.maxReplicaMemoryBytes (${mib(limit)}); it was replaced. Find the leak, or raise the limit`;
          this.#replace(app, d, r, why, false, { message: why });
        }
        return;
      }
      case "log":
        return this.opts.replicaLog?.(msg.line);
      case "drained":
        return;
      case "listening":
        live.listening = msg.open;
        return this.#countListeners();
    }
  }

  #countListeners(): void {
    let n = 0;
    for (const l of this.#live.values()) if (l.listening) n++;
    if (n === this.#listeners) return;
    this.#listeners = n;
    this.opts.onListeners?.(n);
  }

  /** Ingress replicas whose data-plane listener is open now. */
  get listeners(): number {
    return this.#listeners;
  }

  /**
   * Every ingress replica stops listening on the data-plane port; resolves
   * once the requests they held are answered (those past `timeoutS` get 503).
   * Shutdown runs this before it drains replicas, so no stage a request still
   * needs leaves under it.
   */
  async closeListeners(timeoutS: number): Promise<void> {
    await Promise.all([...this.#live.values()].filter((l) => l.listens).map((l) => l.control.closeListener(timeoutS)));
  }

  /** Every listening ingress replica sends its metrics snapshot now; resolves once they are in (or after `timeoutMs`). */
  async freshListenerMetrics(timeoutMs: number): Promise<void> {
    await Promise.all([...this.#live.values()].filter((l) => l.listening).map((l) => l.control.request((seq) => ({ t: "metrics-now", seq }), timeoutMs)));
  }

  /** New routes for the ingress replicas' listeners: sent to every one that listens (or will, once it is ready). */
  pushProxySnapshot(snapshot: ProxySnapshot): void {
    this.#proxySnapshot = snapshot;
    for (const live of this.#live.values()) if (live.listens) live.control.proxyRoutes(snapshot);
  }

  /**
   * Replaces a replica that is unhealthy or stuck on an old userConfig: its
   * id starts again at once, while it drains — or is killed, when it no
   * longer answers at all.
   */
  #replace(app: AppRuntime, d: DeploymentState, r: ReplicaView, why: string, hung = false, failure?: { message: string }): void {
    if (r.state === "STOPPING" || !d.replicas.has(r.key)) return;
    d.replaced(r.key, Date.now(), failure);
    this.#emit(app, d, r, "replica-replaced", why);
    this.#publishRoutes(app);
    this.#live.get(r)?.control.stop(!hung, d.config.gracefulShutdownTimeoutS);
    this.reconcile();
  }

  // ---------------------------------------------------------------- routes

  #table(app: AppRuntime): RoutingTable {
    const deployments: RoutingTable["deployments"] = {};
    for (const d of app.deployments.values()) {
      deployments[d.name] = {
        replicas: d.serving().flatMap((r) => {
          const socket = this.#live.get(r)?.socket;
          return socket ? [{ id: `${r.id}@${socket}`, socket }] : [];
        }),
        maxOngoingRequests: d.config.maxOngoingRequests,
        maxQueuedRequests: d.config.maxQueuedRequests,
        ...(d.config.outlierDetection && { outlierDetection: d.config.outlierDetection }),
      };
    }
    return { version: app.tableVersion, deployments, ...(app.gone.length > 0 && { gone: [...app.gone] }) };
  }

  /** Sends a new snapshot to every serving replica of the app and to this process's router, when it changed. */
  #publishRoutes(app: AppRuntime): void {
    const sig = JSON.stringify(this.#table({ ...app, tableVersion: 0 }));
    if (sig === app.tableSig) return;
    app.tableSig = sig;
    app.tableVersion++;
    const table = this.#table(app);
    app.invoker.update(table);
    this.opts.onRoutes?.(app.name, table);
    for (const d of app.deployments.values()) for (const r of d.serving()) this.#live.get(r)?.control.routes(table);
  }

  #pushLimits(app: AppRuntime, d: DeploymentState): void {
    for (const r of d.replicas.values()) this.#live.get(r)?.control.limits(d.config.maxOngoingRequests);
    app.tableSig = "";
  }

  // ---------------------------------------------------------------- health, autoscaling, backoff timers

  #onTick(): void {
    const now = Date.now();
    for (const app of this.apps.values()) {
      for (const d of app.deployments.values()) {
        for (const r of d.replicas.values()) {
          const live = this.#live.get(r);
          if (r.state !== "RUNNING" || !live || live.healthPending || now - live.lastHealthAt < d.config.healthCheckPeriodS * 1000) continue;
          live.healthPending = true;
          void live.control.checkHealth(d.config.healthCheckTimeoutS * 1000).then((err) => {
            live.healthPending = false;
            live.lastHealthAt = Date.now();
            if (err && r.state !== "STOPPING") this.#replace(app, d, r, `health check failed: ${err.message}`, err.code === "timeout" || err.code === "unavailable");
          });
        }
        if (d.config.autoscalingConfig && !app.deleting) {
          const next = decideReplicas(d.config.autoscalingConfig, d.serving(), d.target(), d.autoscale, now);
          if (next !== null) d.autoscale.desired = next;
        }
      }
    }
    // Backoff timers end and status messages count down: one pass each tick.
    this.reconcile();
  }

  // ---------------------------------------------------------------- status

  #refreshStatus(app: AppRuntime): void {
    const before = app.status;
    Object.assign(app, appStatus(app, Date.now()));
    if (app.status === "RUNNING") app.everRunning = true;
    if (before !== app.status) this.opts.onEvent?.({ app: app.name, kind: "app-status", message: app.status });
  }

  status(): StatusJSON {
    return statusJSON(this.apps.values(), (r) => this.#live.get(r)?.control.proc.pid ?? 0, Date.now());
  }

  /** Replica processes this controller has running now. */
  get processes(): number {
    return this.#live.size;
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

  /** Waits until the app serves (RUNNING) or cannot (DEPLOY_FAILED, or UNHEALTHY with a deployment that cannot start). */
  async settle(name: string): Promise<AppStatus> {
    const app = this.#app(name);
    const stuck = () => [...app.deployments.values()].some((d) => d.gaveUp || d.startFailures >= UNHEALTHY_AFTER_START_FAILURES);
    await this.waitFor(() => !this.apps.has(name) || app.status === "RUNNING" || app.status === "DEPLOY_FAILED" || (app.status === "UNHEALTHY" && stuck()));
    return app.status;
  }

  #app(name: string): AppRuntime {
    const app = this.apps.get(name);
    if (!app) throw new ServeError("not_found", `no application "${name}"; applications: ${[...this.apps.keys()].join(", ") || "(none)"}`);
    return app;
  }

  deployment(app: AppRuntime, name: string): DeploymentState {
    const d = app.deployments.get(name);
    if (!d) throw new ServeError("not_found", `application ${app.name} has no deployment "${name}"; it has ${[...app.deployments.keys()].join(", ")}`);
    return d;
  }

  #emit(app: AppRuntime, d: DeploymentState, r: ReplicaView, kind: ControllerEvent["kind"], message?: string, stack?: string): void {
    this.opts.onEvent?.({ app: app.name, deployment: d.name, replica: r.id, kind, message, stack });
  }

  /** Drains every replica within `timeoutS`, then kills what is left. */
  async shutdown(timeoutS: number): Promise<void> {
    for (const app of this.apps.values()) {
      app.deleting = true;
      for (const d of app.deployments.values()) d.setTarget({ ...d.config, numReplicas: 0, autoscalingConfig: undefined }, d.version);
    }
    this.#step();
    const procs = () => [...this.#live.values()].map((l) => l.control.proc);
    const deadline = unrefSleep(timeoutS * 1000).then(() => "late" as const);
    const done = Promise.all(procs().map((p) => p.exited)).then(() => "done" as const);
    if ((await Promise.race([done, deadline])) === "late") for (const p of procs()) p.kill("SIGKILL");
    await Promise.all(procs().map((p) => p.exited));
    this.#stopped = true;
    clearInterval(this.#tick);
    for (const app of this.apps.values()) app.invoker.close();
  }
}

function mib(bytes: number): string {
  return `${(bytes / 1024 ** 2).toFixed(0)} MiB`;
}

/** A colocated deployment runs in its callers' processes: it has no replicas of its own to start or scale. */
function ownReplicas(cfg: DeploymentConfig): DeploymentConfig {
  return cfg.colocate ? { ...cfg, numReplicas: 0, autoscalingConfig: undefined } : cfg;
}

/** Replicas of a deployment are replaced (rolling) when this changes: the code, the graph, the env. */
export function versionOf(planned: PlannedApp, cfg: DeploymentConfig): string {
  return `${planned.codeVersion}|${JSON.stringify(cfg.env ?? {})}`;
}
