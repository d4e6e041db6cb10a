import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { EXAMPLES, postJSON, tempDir, waitFor, type TempDir } from "./harness.ts";
import { startRole, type Role } from "./role-process.ts";

/**
 * The three cluster roles (SPEC §9) as separate processes wired over TCP on
 * 127.0.0.1, without Docker: the controller's static engine, replicas started
 * by hand (one process per replica, as Swarm would run one task each), a
 * proxy routing by the controller's snapshots.
 */
const SECRET = "cluster-roles-test-secret-0123456789";
const TUTORIAL = join(EXAMPLES, "tutorial/graph.ts");
/** The tutorial's deployments and their replica counts (the DAGDriver runs 2). */
const DEPLOYMENTS = { preprocessor: 1, avgPreprocessor: 1, Model: 1, Model_1: 1, Combiner: 1, DAGDriver: 2 };
const ANSWER = "sum(['(1 * (5 + 1.5))', '(2 * (5 + 1.5))'])";

const roles: Role[] = [];
const start = (name: string, args: string[], env: Record<string, string> = {}) => startRole(roles, SECRET, name, args, env);

async function stop(role: Role): Promise<number | null> {
  role.proc.kill("SIGTERM");
  return role.proc.exited;
}

const startReplica = (deployment: string, control: string) =>
  start(`replica ${deployment}`, ["replica", "--app", "default", "--deployment", deployment, "--listen", "tcp://127.0.0.1:0", "--controller", control, "--health-host", "127.0.0.1", "--health-port", "0", "--drain-timeout-s", "5"]);

const healthOf = async (r: Role) => (await r.line(/health on (http:\/\/\S+),/, "its health address"))[1]!;

describe("controller, proxy and replicas as separate processes over TCP", () => {
  let dir: TempDir;
  let controller: Role;
  let proxy: Role;
  let control: string;
  let admin: string;
  let controllerHttp: string;
  let proxyUrl: string;
  const replicas = new Map<string, Role>();

  const adminJSON = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${admin}${path}`, { method, headers: { "content-type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: res.status, body: (await res.json()) as any };
  };
  const ask = async () => {
    const res = await postJSON(`${proxyUrl}/my-dag`, ["5", [1, 2], "sum"]);
    return { status: res.status, body: await res.text() };
  };
  const startController = (port = 0) =>
    start("controller", ["controller", "--config", TUTORIAL, "--listen", `tcp://127.0.0.1:${port}`, "--host", "127.0.0.1", "--port", "0", "--admin-port", "0", "--state-dir", dir.path]);

  beforeAll(async () => {
    dir = tempDir("sb-cluster-");
    controller = startController();
    control = (await controller.line(/control links on (tcp:\/\/\S+)/, "its control address"))[1]!;
    const m = await controller.line(/listening on (http:\/\/\S+) \(admin API on (http:\/\/\S+)\)/, "its HTTP addresses");
    [controllerHttp, admin] = [m[1]!, m[2]!];
    for (const [d, n] of Object.entries(DEPLOYMENTS)) for (let i = 0; i < n; i++) replicas.set(i ? `${d}#${i}` : d, startReplica(d, control));
    proxy = start("proxy", ["proxy", "--controller", control, "--host", "127.0.0.1", "--port", "0"]);
    proxyUrl = (await proxy.line(/proxy listening on (http:\/\/\S+)/, "its address"))[1]!;
  });

  afterAll(async () => {
    if (process.env.SB_DEBUG) for (const r of roles) console.log(`==== ${r.name}\n${r.out}`);
    for (const r of roles.reverse()) if (r.proc.exitCode === null && r.proc.signalCode === null) r.proc.kill("SIGKILL");
    await Promise.all(roles.map((r) => r.proc.exited));
    await dir?.[Symbol.asyncDispose]();
  });

  it("serves the exact tutorial answers through the proxy, every role ready", async () => {
    await waitFor(async () => (await fetch(`${proxyUrl}/-/ready`)).status === 200, "the proxy to be ready", 60_000);
    expect(await ask()).toEqual({ status: 200, body: ANSWER });
    const max = await postJSON(`${proxyUrl}/my-dag`, ["1", [0, 2], "max"]);
    expect(await max.text()).toBe("max(['(1 * (1 + 1))', '(2 * (1 + 1))'])");
    expect((await fetch(`${controllerHttp}/-/ready`)).status).toBe(200);
    for (const r of replicas.values()) expect((await fetch(`${await healthOf(r)}/-/ready`)).status).toBe(200);
    // Every replica a different process, each serving on its own TCP port.
    const status = (await adminJSON("GET", "/api/applications")).body;
    const model = status.applications.default.deployments.Model;
    expect(model.status).toBe("HEALTHY");
    expect(model.replicas).toHaveLength(1);
  });

  it("says why a role is not ready, and refuses a link without the cluster token", async () => {
    const lonely = start("lonely replica", ["replica", "--app", "default", "--deployment", "Model", "--listen", "tcp://127.0.0.1:0", "--controller", "tcp://127.0.0.1:1", "--health-host", "127.0.0.1", "--health-port", "0"]);
    const res = await fetch(`${await healthOf(lonely)}/-/ready`);
    expect(res.status).toBe(503);
    expect(((await res.json()) as { message: string }).message).toBe("not ready: waiting for the controller at tcp://127.0.0.1:1");
    expect((await fetch(`${await healthOf(lonely)}/-/healthz`)).status).toBe(200);
    expect(await stop(lonely)).toBe(0);

    const wrong = start("wrong token", ["proxy", "--controller", control, "--host", "127.0.0.1", "--port", "0"], { SERVE_BIN_CLUSTER_TOKEN: "a-wrong-secret-that-is-long-enough" });
    await controller.line(/refused a link/, "the refused link");
    await wrong.line(/cannot link to the controller: .*does not know this cluster's token/, "why it cannot link");
    const url = (await wrong.line(/proxy listening on (http:\/\/\S+)/, "its address"))[1]!;
    const r = await fetch(`${url}/-/ready`);
    expect(r.status).toBe(503);
    expect(await stop(wrong)).toBe(0);
  });

  it("refuses role flags that make no sense, with what to give", async () => {
    const bad = start("bad flags", ["replica", "--app", "default", "--deployment", "Model", "--controller", "controller:7070"]);
    expect(await bad.proc.exited).toBe(2);
    expect(bad.out).toContain('--controller takes tcp://host:port, not "controller:7070"');
    const noToken = start("no token", ["proxy", "--controller", control], { SERVE_BIN_CLUSTER_TOKEN: "" });
    expect(await noToken.proc.exited).toBe(2);
    expect(noToken.out).toContain("needs the cluster token");
  });

  it("PATCHes userConfig and numReplicas through the controller's admin API", async () => {
    const uc = await adminJSON("PATCH", "/api/applications/default/deployments/Model", { userConfig: { note: "cluster" } });
    expect(uc.status).toBe(200);
    expect(await ask()).toEqual({ status: 200, body: ANSWER });
    // Static mode: a second Model replica started by hand waits, idle, until the controller claims it.
    const spare = startReplica("Model", control);
    replicas.set("Model#spare", spare);
    await spare.line(/health on/, "its health endpoint");
    const up = await adminJSON("PATCH", "/api/applications/default/deployments/Model", { numReplicas: 2 });
    expect(up.status).toBe(200);
    const status = (await adminJSON("GET", "/api/applications")).body;
    expect(status.applications.default.deployments.Model.replicas.map((r: { state: string }) => r.state)).toEqual(["RUNNING", "RUNNING"]);
    expect((await fetch(`${await healthOf(spare)}/-/ready`)).status).toBe(200);
    const answers = await Promise.all(Array.from({ length: 8 }, () => ask()));
    expect(answers.every((a) => a.status === 200 && a.body === ANSWER)).toBe(true);
    // Down to 1: the controller drains one of them, and that process exits 0.
    const down = await adminJSON("PATCH", "/api/applications/default/deployments/Model", { numReplicas: 1 });
    expect(down.status).toBe(200);
    const models = [replicas.get("Model")!, spare];
    await waitFor(() => models.some((r) => r.proc.exitCode !== null), "one Model replica to drain and exit");
    expect(models.map((r) => r.proc.exitCode).filter((c) => c !== null)).toEqual([0]);
    expect(await ask()).toEqual({ status: 200, body: ANSWER });
  });

  it("keeps answering without the controller, and a new controller adopts the running replicas", async () => {
    const port = Number(/:(\d+)$/.exec(control)![1]);
    const pids = [...replicas.values()].filter((r) => r.proc.exitCode === null).map((r) => r.proc.pid);
    expect(await stop(controller)).toBe(0);
    // The data plane does not need the controller: the proxy and replicas route by their last snapshots.
    for (let i = 0; i < 5; i++) expect(await ask()).toEqual({ status: 200, body: ANSWER });
    controller = startController(port);
    const m = await controller.line(/listening on (http:\/\/\S+) \(admin API on (http:\/\/\S+)\)/, "its HTTP addresses");
    admin = m[2]!;
    await waitFor(async () => (await fetch(`${m[1]}/-/ready`)).status === 200, "the new controller to be ready", 60_000);
    // Restored from its state dir (Model at 1 replica, with the PATCHed userConfig): the same processes, adopted as they redial.
    await waitFor(async () => (await adminJSON("GET", "/api/applications")).body.applications.default?.status === "RUNNING", "every replica adopted", 60_000);
    const status = (await adminJSON("GET", "/api/applications")).body;
    const adopted = Object.values(status.applications.default.deployments as Record<string, { replicas: { pid: number }[] }>).flatMap((d) => d.replicas.map((r) => r.pid));
    expect(adopted.sort()).toEqual([...pids].sort());
    expect(status.applications.default.deployments.Model.replicas).toHaveLength(1);
    expect([...replicas.values()].filter((r) => r.proc.exitCode === null).map((r) => r.proc.pid)).toEqual(pids);
    expect(await ask()).toEqual({ status: 200, body: ANSWER });
  });

  it("drains every role on SIGTERM and exits 0", async () => {
    const live = roles.filter((r) => r.proc.exitCode === null && r.proc.signalCode === null);
    expect(await Promise.all(live.map(stop))).toEqual(live.map(() => 0));
  });
});

describe("userConfig over the control links", () => {
  const RECONFIG = join(import.meta.dirname, "fixtures/docker-reconfig.ts");
  let dir: TempDir;

  afterAll(async () => {
    for (const r of roles) if (r.proc.exitCode === null && r.proc.signalCode === null) r.proc.kill("SIGKILL");
    await Promise.all(roles.map((r) => r.proc.exited));
    await dir?.[Symbol.asyncDispose]();
  });

  it("runs reconfigure() on remote replicas, and a restarted controller adopts them with the userConfig they run", async () => {
    dir = tempDir("sb-cluster-uc-");
    const startController = (port: number) => start("uc controller", ["controller", "--config", RECONFIG, "--listen", `tcp://127.0.0.1:${port}`, "--host", "127.0.0.1", "--port", "0", "--admin-port", "0", "--state-dir", dir.path]);
    let controller = startController(0);
    const control = (await controller.line(/control links on (tcp:\/\/\S+)/, "its control address"))[1]!;
    let admin = (await controller.line(/admin API on (http:\/\/[^\s)]+)/, "its admin address"))[1]!;
    // As many replica processes as the controller wants of each deployment, read from its status.
    const status = async () => (await (await fetch(`${admin}/api/applications`)).json()) as { applications: Record<string, { status: string; deployments: Record<string, { targetReplicas: number }> }> };
    const want = await waitFor(async () => (await status()).applications.default?.deployments, "the controller's targets");
    for (const [d, { targetReplicas }] of Object.entries(want)) for (let i = 0; i < targetReplicas; i++) startReplica(d, control);
    const proxy = start("uc proxy", ["proxy", "--controller", control, "--host", "127.0.0.1", "--port", "0"]);
    const url = (await proxy.line(/proxy listening on (http:\/\/\S+)/, "its address"))[1]!;
    await waitFor(async () => (await fetch(`${url}/-/ready`)).status === 200, "the proxy to be ready", 60_000);
    const greet = async () => (await postJSON(`${url}/greet`, "ada")).text();
    expect(await greet()).toBe("hello, ada");

    const patch = (greeting: string) =>
      fetch(`${admin}/api/applications/default/deployments/Model`, { method: "PATCH", headers: { "content-type": "application/json" }, body: JSON.stringify({ userConfig: { greeting } }) });
    expect((await patch("hi")).status).toBe(200);
    expect(await greet()).toBe("hi, ada");

    // A new controller on the same control address: the replica is adopted as it runs, then reconfigured through the new links.
    const port = Number(/:(\d+)$/.exec(control)![1]);
    expect(await stop(controller)).toBe(0);
    expect(await greet()).toBe("hi, ada");
    controller = startController(port);
    admin = (await controller.line(/admin API on (http:\/\/[^\s)]+)/, "its admin address"))[1]!;
    await waitFor(async () => (await status()).applications.default?.status === "RUNNING", "the replicas adopted", 60_000);
    expect(await greet()).toBe("hi, ada");
    expect((await patch("yo")).status).toBe(200);
    expect(await greet()).toBe("yo, ada");
    const live = roles.filter((r) => r.proc.exitCode === null && r.proc.signalCode === null);
    expect(await Promise.all(live.map(stop))).toEqual(live.map(() => 0));
  });
});
