import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, writeSync } from "node:fs";
import { join } from "node:path";
import { ServeError } from "../error.ts";
import { SERVER_SECTIONS, diffConfigs, mergeDeploymentPatch, mergeRoutePatch } from "../config/diff.ts";
import { parseConfig, type DeploymentPatch, type ResolvedApplicationConfig, type RouteConfig, type ServeConfig } from "../config/schema.ts";
import { ChangePath, resolved } from "../runtime/control/change.ts";
import { Controller, type ControllerOptions } from "../runtime/control/controller.ts";
import { LocalEngine } from "../runtime/control/local-engine.ts";
import type { ControllerEvent, StatusJSON } from "../runtime/control/status.ts";
import type { ProxySnapshot, RoutingTable } from "../runtime/channel/messages.ts";
import { planApp, replan, type PlannedApp } from "../runtime/plan-app.ts";
import { createRunDir, sweepDeadRuns, type RunDir } from "../runtime/run-dir.ts";
import { closeProcessSharedMemory } from "../runtime/channel/shm-channel.ts";
import { createProxy, type ProxyListener } from "./proxy.ts";
import { RouteTable, type RouteEntry } from "./route-table.ts";
import { RequestMetrics } from "./request-metrics.ts";
import { MetricsStore } from "../runtime/metrics/store.ts";
import { MainListener } from "./main-listener.ts";
import { unrefSleep } from "../runtime/unref-sleep.ts";

export interface ServerOptions {
  config: ServeConfig;
  /** Where relative import paths are resolved from (the config file's directory). */
  baseDir: string;
  /** Import paths must stay under this directory. */
  appDir: string;
  stateDir?: string;
  onEvent?: (e: ControllerEvent) => void;
  /** Where replicas' JSON log lines go (logging.format json); stdout by default. */
  replicaLog?: (line: string) => void;
  /** Plans made in advance for some applications (serve.run with a node in hand). */
  preplanned?: Map<string, PlannedApp>;
  /** What runs replicas (local subprocesses by default) and who else hears of routing snapshots: the cluster roles set these. */
  cluster?: Pick<ControllerOptions, "engine" | "onRoutes">;
  /** Wraps the data-plane listener (a cluster role adds its `/-/ready`). */
  wrapProxy?: (proxy: ProxyListener) => ProxyListener;
}

/** The config as applied: server sections and each application resolved with the code's options. */
export type AppliedConfig = Omit<ServeConfig, "applications"> & { applications: ResolvedApplicationConfig[] };

/**
 * The main process: controller, data-plane proxy, and the one change path
 * that every config change takes. The admin API and the CLI drive it through
 * these methods only.
 */
export class Server {
  readonly routes = new RouteTable();
  /** What this process's listener counted, and (merged when read) what the ingress replicas' listeners reported. */
  readonly requests = new RequestMetrics(() => this.metrics.httpCounts());
  readonly controller: Controller;
  readonly changes: ChangePath;
  /** The replicas' counters, for /metrics and the dashboard; the proxy's own queues are added when read. */
  readonly metrics = new MetricsStore(() => [...this.controller.apps.values()].map((a) => ({ app: a.name, queued: a.invoker.queued() })));
  readonly runDir: RunDir;
  #listener: MainListener | null = null;
  #stopping: Promise<void> | null = null;
  /** Each application's last routing snapshot, for the ingress replicas' listeners. */
  readonly #tables = new Map<string, RoutingTable>();
  #snapshotSig = "";
  #snapshotQueued = false;

  private constructor(readonly opts: ServerOptions) {
    sweepDeadRuns();
    this.runDir = createRunDir();
    const proxy = opts.config.proxy;
    // Cluster roles keep their separate proxies: replicas there do not listen.
    const ingressListens = !opts.cluster && proxy.location === "ingress";
    this.controller = new Controller({
      engine: opts.cluster?.engine ?? new LocalEngine(),
      runDir: this.runDir,
      sharedMemory: { ...opts.config.sharedMemory, dir: "/dev/shm" },
      onEvent: opts.onEvent,
      metrics: this.metrics,
      replicaLog: opts.replicaLog ?? ((line) => process.stdout.write(`${line}\n`)),
      onRoutes: (app, table) => {
        this.#tables.set(app, table);
        if (ingressListens) this.#pushSnapshot();
        opts.cluster?.onRoutes?.(app, table);
      },
      ...(ingressListens && {
        ingressListen: () => (this.#listener ? { host: proxy.host, port: this.#listener.port, proxy } : undefined),
        onListeners: (n: number) => this.#listener?.ingressListeners(n),
      }),
    });
    // Nothing runs yet: the start-up config is applied like any other change.
    this.changes = new ChangePath(this.controller, { ...opts.config, applications: [], routes: [] }, () => this.#rebuildRoutes());
  }

  /** Starts the proxy and the applications of `opts.config`; resolves once the proxy listens. */
  static async start(opts: ServerOptions): Promise<Server> {
    const s = new Server(opts);
    const own = createProxy({ routes: s.routes, metrics: s.requests, healthy: () => s.healthy() }, opts.config.proxy);
    const proxy = opts.wrapProxy ? opts.wrapProxy(own) : own;
    s.#listener = new MainListener(opts.config.proxy.host, opts.config.proxy.port, proxy, !opts.cluster && opts.config.proxy.location === "ingress");
    return s;
  }

  get port(): number {
    return this.#listener!.port;
  }

  get url(): string {
    const host = this.opts.config.proxy.host === "0.0.0.0" ? "127.0.0.1" : this.opts.config.proxy.host;
    return `http://${host}:${this.port}`;
  }

  /** Every application has an ingress replica that serves (and at once when there is none). */
  healthy(): boolean {
    const status = this.controller.status();
    for (const app of this.controller.apps.values()) {
      const ingress = status.applications[app.planned.config.name]?.deployments[app.planned.graph.ingress];
      if (!ingress?.replicas.some((r) => r.state === "RUNNING" || r.state === "UPDATING")) return false;
    }
    return true;
  }

  status(): StatusJSON {
    return this.controller.status();
  }

  /** The config as applied, every deployment with its effective options. */
  appliedConfig(): AppliedConfig {
    return resolved(this.changes.current);
  }

  get #config(): ServeConfig {
    return this.changes.current.config;
  }

  /**
   * Applies a whole config, declaratively: applications not in it are removed,
   * unchanged deployments are not touched. Resolves when every application is
   * RUNNING (or rejects with why one cannot start) unless `wait` is false.
   */
  async apply(incoming: ServeConfig, wait = true): Promise<{ needsRestart: string[] }> {
    const { removed } = await this.changes.change(async (current) => {
      // The server sections are fixed for the server's life: kept, and reported.
      const config = { ...incoming, ...Object.fromEntries(SERVER_SECTIONS.map((k) => [k, current.config[k]])) } as ServeConfig;
      const plans = new Map<string, PlannedApp>();
      for (const [i, app] of config.applications.entries()) {
        try {
          plans.set(app.name, this.opts.preplanned?.get(app.name) ?? (await planApp(app, this.opts.baseDir, this.opts.appDir, config.limits.planTimeoutS)));
        } catch (e) {
          if (e instanceof ServeError && e.issues) throw new ServeError(e.code, e.message, { issues: e.issues.map((x) => ({ ...x, path: ["applications", i, ...x.path] })) });
          throw e;
        }
      }
      checkPrefixes([...plans.values()]);
      return { config, plans };
    });
    const needsRestart = diffServerFields(this.#config, incoming);
    const settled = (async () => {
      await removed;
      this.#rebuildRoutes();
      await this.#settleThenSave(incoming.applications.map((a) => a.name));
    })();
    if (wait) await settled;
    else settled.catch(() => {});
    return { needsRestart };
  }

  /**
   * Persists the config once the applications it changed serve: a change
   * whose replicas cannot start never reaches --state-dir, so a restart
   * comes back with the last config that served.
   */
  async #settleThenSave(names: string[]): Promise<void> {
    await this.settleAll(names);
    this.#saveState(this.#config);
  }

  async settleAll(names: string[]): Promise<void> {
    const results = await Promise.all(names.filter((n) => this.controller.apps.has(n)).map(async (n) => [n, await this.controller.settle(n)] as const));
    // Clients told "ready" reach the ingress listeners, not a main-process listener about to close under them.
    await this.#listener?.settled();
    const failed = results.filter(([, s]) => s !== "RUNNING");
    if (failed.length) {
      const status = this.controller.status();
      throw new ServeError("unavailable", failed.map(([n]) => `application ${n} failed to deploy: ${status.applications[n]?.message}`).join("; "));
    }
  }

  /** A live change of one deployment: merged into the current target and applied like any config. */
  async patchDeployment(app: string, name: string, patch: DeploymentPatch, wait = true): Promise<void> {
    await this.changes.change((current) => {
      const plan = current.plans.get(app);
      if (!plan) throw new ServeError("not_found", `no application "${app}"; applications: ${[...current.plans.keys()].join(", ") || "(none)"}`);
      const running = plan.config.deployments.find((d) => d.name === name);
      if (!running) throw new ServeError("not_found", `application ${app} has no deployment "${name}"; it has ${plan.config.deployments.map((d) => d.name).join(", ")}`);
      // The whole merged entry replaces the file's: a PATCH wins over code and file alike.
      const { name: _n, ...entry } = mergeDeploymentPatch(running, patch);
      const applications = current.config.applications.map((a) =>
        a.name !== app ? a : { ...a, deployments: [...a.deployments.filter((d) => d.name !== name), { name, ...entry }] },
      );
      const appConfig = applications.find((a) => a.name === app)!;
      // Resolved again from the graph as planned: a PATCH never imports, so never picks up code edited on disk.
      const next = replan(plan, appConfig);
      return { config: { ...current.config, applications }, plans: new Map([...current.plans, [app, next]]) };
    });
    const settled = this.#settleThenSave([app]);
    if (wait) await settled;
    else settled.catch(() => {});
  }

  async patchRoute(route: RouteConfig): Promise<void> {
    await this.changes.change((current) => {
      const parsed = parseConfig(mergeRoutePatch(current.config, route));
      if (!parsed.ok) throw new ServeError("invalid", parsed.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; "), { issues: parsed.issues });
      return { config: parsed.value, plans: current.plans };
    });
    this.#saveState(this.#config);
  }

  /**
   * Moves an application's traffic back to the code it is being rolled out
   * from. Only an engine that rolls code out in steps (Kubernetes) has
   * anything to move back; it replaces this. Elsewhere a rolling restart
   * replaces replicas in place, so the previous code is applied again instead.
   */
  async rollback(app: string): Promise<void> {
    throw new ServeError("conflict", `application ${app} has no rollout in progress to move back: only the Kubernetes controller rolls code out in steps; apply the previous config (PUT /api/applications) to go back`);
  }

  async deleteApp(name: string, wait = true): Promise<void> {
    const { removed } = await this.changes.change((current) => {
      if (!current.plans.has(name)) throw new ServeError("not_found", `no application "${name}"`);
      const config = { ...current.config, applications: current.config.applications.filter((a) => a.name !== name), routes: current.config.routes.filter((r) => !(name in r.split)) };
      return { config, plans: new Map([...current.plans].filter(([n]) => n !== name)) };
    });
    this.#saveState(this.#config);
    const done = removed.then(() => this.#rebuildRoutes());
    if (wait) await done;
  }

  #rebuildRoutes(): void {
    const entries: RouteEntry[] = [];
    const variant = (app: string, weight: number) => {
      const a = this.controller.apps.get(app);
      return a && !a.deleting ? { app, weight, router: a.invoker.router(a.planned.graph.ingress) } : undefined;
    };
    const split = new Set(this.#config.routes.map((r) => r.routePrefix));
    for (const a of this.controller.apps.values()) {
      if (a.deleting || split.has(a.planned.config.routePrefix)) continue;
      entries.push({ prefix: a.planned.config.routePrefix, variants: [variant(a.planned.config.name, 1)!] });
    }
    for (const r of this.#config.routes) {
      const variants = Object.entries(r.split).flatMap(([app, w]) => variant(app, w) ?? []);
      entries.push({ prefix: r.routePrefix, variants, stickyHeader: r.stickyHeader, shadow: r.shadow ? variant(r.shadow, 1) : undefined });
    }
    this.routes.set(entries);
    if (this.controller.opts.ingressListen) this.#pushSnapshot();
  }

  /** Asks the ingress listeners for their request counts now (at most 0.5 s), so /metrics shows requests already answered. */
  freshListenerCounts(): Promise<void> {
    return this.controller.listeners > 0 ? this.controller.freshListenerMetrics(500) : Promise.resolve();
  }

  /** What the ingress replicas' listeners route by: every application's replicas and the split routes. */
  proxySnapshot(): ProxySnapshot {
    const apps = [...this.controller.apps.values()]
      .filter((a) => !a.deleting && this.#tables.has(a.name))
      .map((a) => ({ name: a.name, routePrefix: a.planned.config.routePrefix, ingress: a.planned.graph.ingress, table: this.#tables.get(a.name)! }));
    return { apps, routes: this.#config.routes };
  }

  /** Sends the snapshot to the ingress listeners when it changed (once per turn of the event loop at most). */
  #pushSnapshot(): void {
    if (this.#snapshotQueued) return;
    this.#snapshotQueued = true;
    queueMicrotask(() => {
      this.#snapshotQueued = false;
      for (const name of this.#tables.keys()) if (!this.controller.apps.has(name)) this.#tables.delete(name);
      const snapshot = this.proxySnapshot();
      const sig = JSON.stringify(snapshot);
      if (sig === this.#snapshotSig) return;
      this.#snapshotSig = sig;
      this.controller.pushProxySnapshot(snapshot);
    });
  }

  /** Writes the applied config to --state-dir now (after a change made through `changes` directly that serves already). */
  persist(): void {
    this.#saveState(this.#config);
  }

  /** Only accepted targets that serve get here: a refused change never reaches the disk. */
  #saveState(config: ServeConfig): void {
    const dir = this.opts.stateDir;
    if (!dir) return;
    mkdirSync(dir, { recursive: true });
    const file = join(dir, "config.json");
    const tmp = `${file}.${process.pid}.tmp`;
    // Synced before the rename: after a crash the file is the old config or the new one, never a torn one.
    const fd = openSync(tmp, "w", 0o600);
    try {
      writeSync(fd, JSON.stringify({ baseDir: this.opts.baseDir, config }, null, 2));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
  }

  /** Stops taking requests, drains every replica (at most shutdownTimeoutS), removes the run's files. */
  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      // One deadline for the whole shutdown, so SIGTERM ends inside shutdownTimeoutS (and Docker's grace).
      const deadline = performance.now() + this.#config.proxy.shutdownTimeoutS * 1000;
      const left = () => Math.max(0, deadline - performance.now());
      await Promise.race([this.#listener?.stop(), unrefSleep(left())]);
      // Ingress listeners answer what they hold first (a little before the deadline, so a late request's 503 is written).
      await this.controller.closeListeners(Math.max(0, left() - 250) / 1000);
      await this.controller.shutdown(left() / 1000);
      closeProcessSharedMemory();
      this.runDir.remove();
    })();
    return this.#stopping;
  }
}

function checkPrefixes(planned: PlannedApp[]): void {
  const seen = new Map<string, string>();
  for (const p of planned) {
    const other = seen.get(p.config.routePrefix);
    if (other) throw new ServeError("invalid", `applications ${other} and ${p.config.name} both serve ${p.config.routePrefix}; give each its own routePrefix`);
    seen.set(p.config.routePrefix, p.config.name);
  }
}

/** Server fields (SERVER_SECTIONS) a config asks to change: they need a server restart. */
function diffServerFields(running: ServeConfig, incoming: ServeConfig): string[] {
  return diffConfigs({ ...running, applications: [], routes: [] }, { ...incoming, applications: [], routes: [] }).serverRestartNeeded;
}
