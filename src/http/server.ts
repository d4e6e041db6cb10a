import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, writeSync } from "node:fs";
import { join } from "node:path";
import { ServeError } from "../error.ts";
import { mergeRoutePatch } from "../config/diff.ts";
import { parseConfig, type DeploymentPatch, type ResolvedApplicationConfig, type RouteConfig, type ServeConfig } from "../config/schema.ts";
import { Controller, type ControllerEvent, type StatusJSON } from "../runtime/controller.ts";
import { planApp, type PlannedApp } from "../runtime/plan-app.ts";
import { createRunDir, sweepDeadRuns, type RunDir } from "../runtime/run-dir.ts";
import { ProcessSupervisor } from "../runtime/supervisor.ts";
import { closeProcessSharedMemory } from "../runtime/channel/shm-channel.ts";
import { createProxy } from "./proxy.ts";
import { RouteTable, type RouteEntry } from "./route-table.ts";
import { RequestMetrics } from "./request-metrics.ts";

export interface ServerOptions {
  config: ServeConfig;
  /** Where relative import paths are resolved from (the config file's directory). */
  baseDir: string;
  /** Import paths must stay under this directory. */
  appDir: string;
  stateDir?: string;
  onEvent?: (e: ControllerEvent) => void;
  /** Plans made in advance for some applications (serve.run with a node in hand). */
  preplanned?: Map<string, PlannedApp>;
}

/** The config as applied: server sections and each application resolved with the code's options. */
export type AppliedConfig = Omit<ServeConfig, "applications"> & { applications: ResolvedApplicationConfig[] };

/**
 * The main process: controller, data-plane proxy, and the config they serve.
 * The admin API and the CLI drive it through these methods only.
 */
export class Server {
  readonly routes = new RouteTable();
  readonly requests = new RequestMetrics();
  readonly controller: Controller;
  readonly runDir: RunDir;
  #config: ServeConfig;
  #http: ReturnType<typeof Bun.serve> | null = null;
  #stopping: Promise<void> | null = null;

  private constructor(readonly opts: ServerOptions) {
    this.#config = opts.config;
    sweepDeadRuns();
    this.runDir = createRunDir();
    this.controller = new Controller({
      supervisor: new ProcessSupervisor(),
      runDir: this.runDir,
      sharedMemory: { ...opts.config.sharedMemory, dir: "/dev/shm" },
      onEvent: opts.onEvent,
    });
  }

  /** Starts the proxy and the applications of `opts.config`; resolves once the proxy listens. */
  static async start(opts: ServerOptions): Promise<Server> {
    const s = new Server(opts);
    const proxy = createProxy(
      { routes: s.routes, metrics: s.requests, healthy: () => s.healthy() },
      { requestTimeoutS: opts.config.proxy.requestTimeoutS, maxBodyBytes: opts.config.proxy.maxBodyBytes, errorDetail: opts.config.proxy.errorDetail },
    );
    s.#http = Bun.serve({
      hostname: opts.config.proxy.host,
      port: opts.config.proxy.port,
      fetch: proxy.fetch,
      idleTimeout: 0,
      maxRequestBodySize: opts.config.proxy.maxBodyBytes + 1,
    });
    return s;
  }

  get port(): number {
    return this.#http!.port!;
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
    return {
      ...this.#config,
      applications: this.#config.applications.map((a) => this.controller.apps.get(a.name)?.planned.config ?? { ...a, routePrefix: a.routePrefix ?? "/", deployments: [] }),
    };
  }

  /**
   * Applies a whole config, declaratively: applications not in it are removed,
   * unchanged deployments are not touched. Resolves when every application is
   * RUNNING (or rejects with why one cannot start) unless `wait` is false.
   */
  async apply(incoming: ServeConfig, wait = true): Promise<{ needsRestart: string[] }> {
    // proxy, admin and sharedMemory are fixed for the server's life: kept, and reported.
    const needsRestart = serverFields(this.#config, incoming);
    const config = { ...incoming, proxy: this.#config.proxy, admin: this.#config.admin, sharedMemory: this.#config.sharedMemory };
    const planned: PlannedApp[] = [];
    for (const [i, app] of config.applications.entries()) {
      try {
        planned.push(this.opts.preplanned?.get(app.name) ?? (await planApp(app, this.opts.baseDir, this.opts.appDir)));
      } catch (e) {
        if (e instanceof ServeError && e.issues) throw new ServeError(e.code, e.message, { issues: e.issues.map((x) => ({ ...x, path: ["applications", i, ...x.path] })) });
        throw e;
      }
    }
    this.#checkPrefixes(planned);
    // userConfig changes first, in place: a reconfigure() that throws refuses the whole config, nothing else changed.
    await this.controller.reconfigureFor(planned);
    this.#config = config;
    const names = new Set(planned.map((p) => p.config.name));
    const removals = [...this.controller.apps.keys()].filter((n) => !names.has(n)).map((n) => this.controller.removeApp(n));
    for (const p of planned) this.controller.setApp(p);
    this.#rebuildRoutes();
    this.#saveState();
    const settled = (async () => {
      await Promise.all(removals);
      this.#rebuildRoutes();
      await this.settleAll(planned.map((p) => p.config.name));
    })();
    if (wait) await settled;
    else settled.catch(() => {});
    return { needsRestart };
  }

  async settleAll(names: string[]): Promise<void> {
    const results = await Promise.all(names.map(async (n) => [n, await this.controller.settle(n)] as const));
    const failed = results.filter(([, s]) => s !== "RUNNING");
    if (failed.length) {
      const status = this.controller.status();
      throw new ServeError("unavailable", failed.map(([n]) => `application ${n} failed to deploy: ${status.applications[n]?.message}`).join("; "));
    }
  }

  async patchDeployment(app: string, name: string, patch: DeploymentPatch, wait = true): Promise<void> {
    const next = await this.controller.patchDeployment(app, name, patch);
    this.#config = {
      ...this.#config,
      applications: this.#config.applications.map((a) =>
        a.name !== app
          ? a
          : { ...a, deployments: a.deployments.some((d) => d.name === name) ? a.deployments.map((d) => (d.name === name ? { ...next } : d)) : [...a.deployments, { ...next }] },
      ),
    };
    this.#saveState();
    if (wait) await this.settleAll([app]);
  }

  patchRoute(route: RouteConfig): void {
    const parsed = parseConfig(mergeRoutePatch(this.#config, route));
    if (!parsed.ok) throw new ServeError("invalid", parsed.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; "), { issues: parsed.issues });
    this.#config = parsed.value;
    this.#rebuildRoutes();
    this.#saveState();
  }

  async deleteApp(name: string, wait = true): Promise<void> {
    if (!this.controller.apps.has(name)) throw new ServeError("not_found", `no application "${name}"`);
    this.#config = { ...this.#config, applications: this.#config.applications.filter((a) => a.name !== name), routes: this.#config.routes.filter((r) => !(name in r.split)) };
    const done = this.controller.removeApp(name).then(() => this.#rebuildRoutes());
    this.#rebuildRoutes();
    this.#saveState();
    if (wait) await done;
  }

  #checkPrefixes(planned: PlannedApp[]): void {
    const seen = new Map<string, string>();
    for (const p of planned) {
      const other = seen.get(p.config.routePrefix);
      if (other) throw new ServeError("invalid", `applications ${other} and ${p.config.name} both serve ${p.config.routePrefix}; give each its own routePrefix`);
      seen.set(p.config.routePrefix, p.config.name);
    }
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
  }

  #saveState(): void {
    const dir = this.opts.stateDir;
    if (!dir) return;
    mkdirSync(dir, { recursive: true });
    const file = join(dir, "config.json");
    const tmp = `${file}.${process.pid}.tmp`;
    // Synced before the rename: after a crash the file is the old config or the new one, never a torn one.
    const fd = openSync(tmp, "w", 0o600);
    try {
      writeSync(fd, JSON.stringify({ baseDir: this.opts.baseDir, config: this.#config }, null, 2));
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
      await Promise.race([this.#http?.stop(false), Bun.sleep(left())]);
      await this.controller.shutdown(left() / 1000);
      closeProcessSharedMemory();
      this.runDir.remove();
    })();
    return this.#stopping;
  }
}

function serverFields(a: ServeConfig, b: ServeConfig): string[] {
  const out: string[] = [];
  for (const section of ["proxy", "admin", "sharedMemory"] as const) {
    for (const k of Object.keys({ ...a[section], ...b[section] })) {
      if ((a[section] as Record<string, unknown>)[k] !== (b[section] as Record<string, unknown>)[k]) out.push(`${section}.${k}`);
    }
  }
  return out;
}
