/**
 * The controller's loop against a fake engine: no process starts; each fake
 * replica answers control messages as the test tells it. Covers what the
 * loop itself owns: paced starts, crash loops through exits, a change during
 * a rolling update, scale-down while replicas drain, and the rollback of a
 * failing reconfigure().
 */
import { afterEach, describe, expect, it } from "vitest";
import { DEFAULTS, LIMITS_DEFAULTS, type DeploymentConfig, type LimitsConfig } from "../src/config/schema.ts";
import type { ControlFromReplica, ControlToReplica, ReplicaSpec } from "../src/runtime/channel/messages.ts";
import { Controller } from "../src/runtime/control/controller.ts";
import type { Engine, ExitInfo, ReplicaEvents, ReplicaProcess } from "../src/runtime/control/engine.ts";
import type { PlannedApp } from "../src/runtime/plan-app.ts";
import { waitFor } from "./harness.ts";

/** One fake replica: records what it was sent; the test makes it ready, answer or exit. */
class FakeReplica implements ReplicaProcess {
  static #pids = 1000;
  readonly pid = FakeReplica.#pids++;
  readonly sent: ControlToReplica[] = [];
  readonly exited: Promise<ExitInfo>;
  #exit!: (i: ExitInfo) => void;
  alive = true;
  /** How it answers a reconfigure: undefined = ok, a string = throws that message. */
  reconfigureError?: string;

  constructor(
    readonly spec: ReplicaSpec,
    readonly events: ReplicaEvents,
    readonly autoDrain: boolean,
  ) {
    this.exited = new Promise((r) => (this.#exit = r));
  }

  send(msg: ControlToReplica): void {
    this.sent.push(msg);
    if (msg.t === "reconfigure") {
      const error = this.reconfigureError ? { code: "user" as const, message: this.reconfigureError } : undefined;
      queueMicrotask(() => this.events.message({ t: "done", seq: msg.seq, ...(error && { error }) }));
    }
    if (msg.t === "health") queueMicrotask(() => this.events.message({ t: "done", seq: msg.seq }));
    if (msg.t === "drain" && this.autoDrain) queueMicrotask(() => this.exit({ code: 0, signal: null }));
  }

  kill(): void {
    this.exit({ code: null, signal: "SIGKILL" });
  }

  ready(): void {
    this.events.message({ t: "ready", socket: this.spec.socket });
  }

  say(msg: ControlFromReplica): void {
    this.events.message(msg);
  }

  exit(info: ExitInfo): void {
    if (!this.alive) return;
    this.alive = false;
    this.#exit(info);
    this.events.exit(info);
  }
}

class FakeEngine implements Engine {
  readonly all: FakeReplica[] = [];
  /** Replicas exit as soon as they are asked to drain (set false to keep them draining). */
  autoDrain = true;
  /** New replicas report ready at once. */
  autoReady = true;

  get running(): number {
    return this.all.filter((r) => r.alive).length;
  }

  start(spec: ReplicaSpec, _env: Record<string, string>, events: ReplicaEvents): ReplicaProcess {
    const r = new FakeReplica(spec, events, this.autoDrain);
    this.all.push(r);
    if (this.autoReady) queueMicrotask(() => r.ready());
    return r;
  }

  live(deployment: string): FakeReplica[] {
    return this.all.filter((r) => r.alive && r.spec.deployment === deployment);
  }
}

// Health checks every 1000 s: the fake replicas answer them, but these tests are about other things.
const cfg = (over: Partial<DeploymentConfig> = {}): DeploymentConfig => ({ ...DEFAULTS, name: "Model", healthCheckPeriodS: 1000, env: {}, ...over });

/** A planned application of one deployment; only what the loop reads is real. */
function plan(over: Partial<DeploymentConfig> = {}, code = "v1"): PlannedApp {
  return {
    config: { name: "app", importPath: "./graph.ts", routePrefix: "/", deployments: [cfg(over)] },
    graph: { hash: "h", ingress: "Model", deployments: [], view: { ingress: "Model", nodes: [], edges: [] } },
    modulePath: "/nowhere/graph.ts",
    exportName: "default",
    fileHash: "",
    codeVersion: code,
  };
}

let controller: Controller | null = null;
afterEach(async () => {
  await controller?.shutdown(0);
  controller = null;
});

function setup(limits: Partial<LimitsConfig> = {}) {
  const engine = new FakeEngine();
  const c = new Controller({
    engine,
    runDir: { path: "/nowhere", socketPath: (n) => `/nowhere/${n}.sock`, remove: () => {} },
    sharedMemory: { enabled: false, thresholdBytes: 16384, arenaBytes: 1 << 20, dir: "/dev/shm" },
  });
  c.limits = { ...LIMITS_DEFAULTS, ...limits };
  controller = c;
  const model = () => c.status().applications.app!.deployments.Model!;
  return { engine, c, model };
}

describe("the controller loop, against a fake engine", () => {
  it("starts at most maxConcurrentStarts replicas at once and the rest as those become ready", async () => {
    const { engine, c, model } = setup({ maxConcurrentStarts: 3 });
    engine.autoReady = false;
    c.setApp(plan({ numReplicas: 10 }));
    await waitFor(() => engine.all.length === 3, "three starts");
    await Bun.sleep(0);
    expect(engine.all).toHaveLength(3); // no more until one is ready
    engine.all[0]!.ready();
    await waitFor(() => engine.all.length === 4, "a fourth start");
    let mostStarting = 0;
    await waitFor(
      () => {
        mostStarting = Math.max(mostStarting, model().replicas.filter((r) => r.state === "STARTING").length);
        for (const r of engine.all) if (!r.sent.length) r.ready(); // a ready replica is sent its routes
        return engine.all.length === 10 && model().status === "HEALTHY";
      },
      "ten replicas, healthy",
      5_000,
      5,
    );
    expect(mostStarting).toBeLessThanOrEqual(3);
    expect(engine.running).toBe(10);
  });

  it("restarts a replica that keeps exiting under a growing backoff and shows UNHEALTHY with the user's error; the process count never passes the target", async () => {
    const { engine, c, model } = setup({ restartBackoffS: 0.05, restartBackoffMaxS: 0.2 });
    c.setApp(plan());
    let most = 0;
    for (let i = 0; i < 5; i++) {
      const [r] = await waitFor(() => (engine.live("Model").length ? engine.live("Model") : null), "a live replica", 5_000, 2);
      most = Math.max(most, engine.running);
      r!.say({ t: "failed", error: { code: "user", message: "weights corrupt" } });
      r!.exit({ code: 1, signal: null });
      await waitFor(() => model().restarts === i + 1, `restart ${i + 1} counted`, 5_000, 2);
      if (i >= 1) expect(model()).toMatchObject({ status: "UNHEALTHY", message: expect.stringContaining("weights corrupt") });
    }
    expect(most).toBe(1);
    expect(model().message).toMatch(/replica Model#0 exit code 1 after running [\d.]+ s: weights corrupt; \d failures in a row/);
    expect(engine.all.every((r) => r.spec.replicaId === "Model#0")).toBe(true);
  });

  it("rolls new code in under a PATCH that changes the count half-way: old replicas go only as new ones serve", async () => {
    const { engine, c, model } = setup();
    c.setApp(plan({ numReplicas: 2 }, "v1"));
    await waitFor(() => model().status === "HEALTHY", "v1 healthy");
    const v1 = engine.live("Model");
    engine.autoReady = false;
    c.setApp(plan({ numReplicas: 2 }, "v2"));
    await waitFor(() => engine.all.length === 4, "two v2 replicas starting");
    expect(v1.every((r) => r.alive && !r.sent.some((m) => m.t === "drain"))).toBe(true);
    c.setApp(plan({ numReplicas: 3 }, "v2")); // the PATCH, mid-roll
    await waitFor(() => engine.all.length === 5, "a third v2 replica");
    const v2 = engine.all.slice(2);
    // Target 3: one new replica serving and two old ones make 3, so no old one goes yet.
    v2[0]!.ready();
    await waitFor(() => model().replicas.filter((r) => r.state === "RUNNING").length === 3, "the first v2 replica running");
    expect(v1.every((r) => r.alive)).toBe(true);
    v2[1]!.ready();
    await waitFor(() => v1.filter((r) => !r.alive).length === 1, "one v1 replica to go");
    v2[2]!.ready();
    await waitFor(() => v1.every((r) => !r.alive) && model().status === "HEALTHY", "every v1 replica gone, v2 healthy");
    expect(model().replicas).toHaveLength(3);
  });

  it("scales down while replicas drain: the draining ones leave the count at once, and a scale-up meanwhile starts new replicas", async () => {
    const { engine, c, model } = setup();
    engine.autoDrain = false;
    c.setApp(plan({ numReplicas: 3 }));
    await waitFor(() => model().status === "HEALTHY", "three healthy");
    c.setApp(plan({ numReplicas: 1 }));
    await waitFor(() => model().replicas.filter((r) => r.state === "STOPPING").length === 2, "two draining");
    expect(engine.live("Model").filter((r) => r.sent.some((m) => m.t === "drain"))).toHaveLength(2);
    c.setApp(plan({ numReplicas: 2 }));
    await waitFor(() => model().replicas.filter((r) => r.state === "RUNNING").length === 2, "a new replica running beside the drainers");
    expect(engine.all).toHaveLength(4);
    for (const r of engine.live("Model").filter((x) => x.sent.some((m) => m.t === "drain"))) r.exit({ code: 0, signal: null });
    await waitFor(() => model().status === "HEALTHY" && model().replicas.length === 2, "two replicas, healthy");
    expect(model().restarts).toBe(0);
  });

  it("rolls a failing reconfigure() back on every replica and refuses the change with the user's error", async () => {
    const { engine, c, model } = setup();
    c.setApp(plan({ numReplicas: 3, userConfig: { w: 1 } }));
    await waitFor(() => model().status === "HEALTHY", "three healthy");
    const [a, b, bad] = engine.live("Model");
    bad!.reconfigureError = 'weights "bad" cannot be loaded';
    await expect(c.changeUserConfig("app", "Model", { w: 2 })).rejects.toThrow(/reconfigure\(\) of Model failed on replica Model#2; the change was rolled back on every replica: weights "bad" cannot be loaded/);
    for (const r of [a!, b!, bad!]) {
      const sent = r.sent.filter((m) => m.t === "reconfigure").map((m) => (m as { userConfig: unknown }).userConfig);
      expect(sent).toEqual([{ w: 2 }, { w: 1 }]);
    }
    expect(c.apps.get("app")!.deployments.get("Model")!.config.userConfig).toEqual({ w: 1 });
    expect(c.status().applications.app!.message).toBe('reconfigure of Model failed on replica Model#2 and was rolled back: weights "bad" cannot be loaded');
    bad!.reconfigureError = undefined;
    await c.changeUserConfig("app", "Model", { w: 3 });
    expect(c.apps.get("app")!.deployments.get("Model")!.config.userConfig).toEqual({ w: 3 });
  });
});
