/**
 * The multi-host behaviour through the Kubernetes code path: a real
 * `serve-bin controller --engine kubernetes`, real replica and proxy role
 * processes on 127.0.0.1 (each replica on its own ports, as pods on their
 * own IPs), and the API server stand-in (test/kube-api-standin.ts) playing
 * Kubernetes, with the test's kubelet (test/kube-kubelet.ts) starting and
 * stopping replica processes when the controller patches `deployments/scale`
 * and publishing their EndpointSlices from their readiness probes.
 *
 * No real API server (nor kind, k3s or minikube) can run on these machines:
 * everything Kubernetes does here is the stand-in's and the test kubelet's
 * doing, so this proves serve-bin's side of the contract (which calls, when,
 * and what it does with the answers), not Kubernetes' side of it.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { join } from "node:path";
import { kubeDeploymentName, replicaSelector } from "../src/cluster/kubernetes/names.ts";
import { BUN, CLI, EXAMPLES, postJSON, runCli, tempDir, waitFor, type TempDir } from "./harness.ts";
import { KubeApiStandIn } from "./kube-api-standin.ts";
import { TestKubelet } from "./kube-kubelet.ts";
import { endRoles, startRole, type Role } from "./role-process.ts";

const SECRET = "kubernetes-cluster-test-secret-0123456789";
const TUTORIAL = join(EXAMPLES, "tutorial/graph.ts");
/** The tutorial's deployments and the counts its manifests would carry (the DAGDriver runs 2). */
const DEPLOYMENTS: Record<string, number> = { preprocessor: 1, avgPreprocessor: 1, Model: 1, Model_1: 1, Combiner: 1, DAGDriver: 2 };
const ANSWER = "sum(['(1 * (5 + 1.5))', '(2 * (5 + 1.5))'])";
const MODEL = kubeDeploymentName("default", "Model");
const BY_KUBE_NAME = new Map(Object.keys(DEPLOYMENTS).map((d) => [kubeDeploymentName("default", d), d]));
const SCALE_PATH = (name: string) => `/apis/apps/v1/namespaces/serving/deployments/${name}/scale`;
const SLICES_LIST = "/apis/discovery.k8s.io/v1/namespaces/serving/endpointslices?labelSelector=app.kubernetes.io/part-of=serve-bin,app.kubernetes.io/component=replica";

const roles: Role[] = [];
const start = (name: string, args: string[], env: Record<string, string> = {}, compiled = false) => startRole(roles, SECRET, name, args, env, compiled);

/** A ServiceAccount directory as Kubernetes mounts it, for the stand-in. */
function serviceAccount(dir: string, api: KubeApiStandIn): string {
  writeFileSync(join(dir, "token"), api.token);
  writeFileSync(join(dir, "namespace"), api.namespace);
  return dir;
}

/** A stand-in holding what `kubectl apply -k` of the manifests creates for the controller: its ConfigMap and an empty Lease. */
function standIn(): KubeApiStandIn {
  const api = new KubeApiStandIn();
  api.putConfigMap("serve-bin-config", { "serve.yaml": "# as built\n" });
  api.putLease("serve-bin-controller");
  return api;
}

/** What the manifests set on the controller's container. */
const KUBE_ENV = { SERVE_BIN_KUBE_CONFIGMAP: "serve-bin-config", SERVE_BIN_KUBE_LEASE: "serve-bin-controller", SERVE_BIN_KUBE_AUTOSCALER: "serve-bin" };

const controllerArgs = (api: KubeApiStandIn, sa: string, state: string) => [
  "controller", "--config", TUTORIAL, "--engine", "kubernetes", "--kube-api", api.url, "--kube-credentials", sa,
  "--listen", "tcp://127.0.0.1:0", "--host", "127.0.0.1", "--port", "0", "--admin-port", "0", "--state-dir", state,
];

describe("serve-bin on Kubernetes (API server stand-in, real role processes)", () => {
  let dir: TempDir;
  let api: KubeApiStandIn;
  let kubelet: TestKubelet;
  let controller: Role;
  let admin: string;
  let proxyUrl: string;

  const adminJSON = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${admin}${path}`, { method, headers: { "content-type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: res.status, body: (await res.json()) as any };
  };
  const model = async () => (await adminJSON("GET", "/api/applications")).body.applications.default?.deployments.Model as { status: string; replicas: { pid: number; state: string }[] } | undefined;
  const ask = async () => {
    const res = await postJSON(`${proxyUrl}/my-dag`, ["5", [1, 2], "sum"]);
    return { status: res.status, body: await res.text() };
  };
  /** Scale PATCHes the stand-in got since the last look, as "NAME → N". */
  const scalePatches = () =>
    api.calls.splice(0).filter((c) => c.method === "PATCH" && c.url.endsWith("/scale")).map((c) => `${c.url.split("/").at(-2)} → ${c.body!.spec.replicas}`);
  const modelPodsReady = (n: number) => kubelet.of(MODEL).length === n && kubelet.of(MODEL).every((p) => p.ready);

  beforeAll(async () => {
    dir = tempDir("sb-kube-");
    api = standIn();
    const sa = serviceAccount(dir.path, api);
    controller = start("controller", controllerArgs(api, sa, join(dir.path, "state")), { HOSTNAME: "controller-a", ...KUBE_ENV });
    const control = (await controller.line(/control links on (tcp:\/\/\S+)/, "its control address"))[1]!;
    admin = (await controller.line(/admin API on (http:\/\/[^\s)]+)/, "its admin address"))[1]!;
    kubelet = new TestKubelet(
      api,
      (kubeName, link, health) => [BUN, CLI, "replica", "--app", "default", "--deployment", BY_KUBE_NAME.get(kubeName)!, "--listen", `tcp://127.0.0.1:${link}`, "--controller", control, "--health-host", "127.0.0.1", "--health-port", String(health), "--drain-timeout-s", "5"],
      { SERVE_BIN_CLUSTER_TOKEN: SECRET, SERVE_BIN_CLUSTER_TOKEN_FILE: "" },
    );
    // `kubectl apply`: the Deployments with the counts the manifests carry; the kubelet starts their pods.
    for (const [kubeName, d] of BY_KUBE_NAME) api.addDeployment(kubeName, replicaSelector(kubeName), DEPLOYMENTS[d]);
    const proxy = start("proxy", ["proxy", "--controller", control, "--host", "127.0.0.1", "--port", "0"]);
    proxyUrl = (await proxy.line(/proxy listening on (http:\/\/\S+)/, "its address"))[1]!;
  }, 60_000);

  afterAll(async () => {
    if (process.env.SB_DEBUG) {
      for (const r of roles) console.log(`==== ${r.name}\n${r.out}`);
      for (const p of kubelet?.pods ?? []) console.log(`==== pod ${p.name}\n${p.out}`);
    }
    await endRoles(roles);
    await kubelet?.[Symbol.asyncDispose]();
    await api?.[Symbol.asyncDispose]();
    await dir?.[Symbol.asyncDispose]();
  });

  it("holds the Lease, finds the replicas Kubernetes runs, and serves the tutorial through the proxy without scaling anything", async () => {
    await waitFor(async () => (await fetch(`${proxyUrl}/-/ready`)).status === 200, "the proxy to be ready", 60_000);
    expect(await ask()).toEqual({ status: 200, body: ANSWER });
    await controller.line(/Kubernetes lists ready replicas: .*default\/Model 1.*default\/DAGDriver 2/, "the EndpointSlices listed");
    expect(api.leases.get("serve-bin-controller")!.spec.holderIdentity).toBe("controller-a");
    const status = (await adminJSON("GET", "/api/applications")).body.applications.default;
    expect(Object.fromEntries(Object.entries(status.deployments as Record<string, { replicas: unknown[] }>).map(([d, s]) => [d, s.replicas.length]))).toEqual(DEPLOYMENTS);
    // Every replica a separate process the kubelet started, each serving.
    const pids = Object.values(status.deployments as Record<string, { replicas: { pid: number }[] }>).flatMap((d) => d.replicas.map((r) => r.pid));
    expect(pids.sort()).toEqual(kubelet.pods.map((p) => p.proc.pid).sort());
    // The counts the manifests carry were what the controller wanted: read, never written.
    expect(scalePatches()).toEqual([]);
  });

  it("PATCH numReplicas 1 → 3: one scale PATCH, three replica processes serving, the ConfigMap updated", async () => {
    // The start-up config has served and is in the state dir: unchanged, it is not written back (kubectl diff shows nothing).
    await waitFor(() => existsSync(join(dir.path, "state", "config.json")), "the state file");
    expect(api.configMaps.get("serve-bin-config")!.data["serve.yaml"]).toBe("# as built\n");
    api.calls.length = 0;
    const up = await adminJSON("PATCH", "/api/applications/default/deployments/Model", { numReplicas: 3 });
    expect(up.status).toBe(200);
    expect(scalePatches()).toEqual([`${MODEL} → 3`]);
    expect((await model())!.replicas.map((r) => r.state)).toEqual(["RUNNING", "RUNNING", "RUNNING"]);
    await waitFor(() => modelPodsReady(3), "three ready Model pods");
    expect((await model())!.replicas.map((r) => r.pid).sort()).toEqual(kubelet.of(MODEL).map((p) => p.proc.pid).sort());
    const answers = await Promise.all(Array.from({ length: 12 }, () => ask()));
    expect(answers.every((a) => a.status === 200 && a.body === ANSWER)).toBe(true);
    const saved = () => parseYaml(api.configMaps.get("serve-bin-config")!.data["serve.yaml"]) as { applications?: { deployments?: { name: string; numReplicas?: number }[] }[] } | null;
    await waitFor(() => saved()?.applications?.[0]?.deployments?.find((d) => d.name === "Model")?.numReplicas === 3, "the ConfigMap to carry Model's 3 replicas");
  });

  it("a replica killed with its node (kill -9 by pid): its endpoint goes, traffic is still served, the count is restored, nothing is scaled", async () => {
    const victim = kubelet.of(MODEL)[0]!;
    const killed = victim.proc.pid;
    let stop = false;
    let ok = 0;
    const failed: string[] = [];
    const CONCURRENCY = 4;
    const load = Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (!stop) {
          const a = await ask().catch((e) => ({ status: 0, body: String(e) }));
          if (a.status === 200 && a.body === ANSWER) ok++;
          else failed.push(`${a.status} ${a.body}`);
        }
      }),
    );
    await waitFor(() => ok >= 20, "traffic before the kill");
    api.calls.length = 0;
    const logFrom = controller.out.length;
    kubelet.losePod(victim);
    // The controller's watch sees the endpoint go (before the replacement is ready).
    await waitFor(() => /Kubernetes lists ready replicas: .*default\/Model 2/.test(controller.out.slice(logFrom)), "the lost endpoint in the controller's watch");
    await waitFor(async () => {
      const m = await model();
      return m?.replicas.length === 3 && m.replicas.every((r) => r.state === "RUNNING") && !m.replicas.some((r) => r.pid === killed) && modelPodsReady(3);
    }, "three Model replicas again, the killed one replaced", 60_000);
    const after = ok;
    await waitFor(() => ok >= after + 20, "traffic after the replacement");
    stop = true;
    await load;
    // Only requests in flight on the killed replica may fail.
    expect(failed.length).toBeLessThanOrEqual(CONCURRENCY);
    expect(scalePatches()).toEqual([]);
    expect(api.deployments.get(MODEL)!.replicas).toBe(3);
    console.log(`kill -9 of a Model replica under load: ${ok} ok, ${failed.length} failed`);
  });

  it("relists after a dropped watch whose version is gone, and scales 3 → 2 by draining first, then one PATCH", async () => {
    const lists = () => api.calls.filter((c) => c.method === "GET" && decodeURIComponent(c.url) === SLICES_LIST).length;
    api.calls.length = 0;
    // Cut the watch; something changes in the namespace meanwhile; then the version the controller holds is compacted away.
    api.dropWatches();
    api.addForeignSlice("someone-elses-web-x1", { "kubernetes.io/service-name": "web" });
    api.compact();
    await waitFor(() => lists() >= 1 && api.openWatches === 1, "the controller to list again and watch");
    api.calls.length = 0;
    kubelet.events.length = 0;
    const down = await adminJSON("PATCH", "/api/applications/default/deployments/Model", { numReplicas: 2 });
    expect(down.status).toBe(200);
    await waitFor(() => api.deployments.get(MODEL)!.replicas === 2, "the scale PATCH");
    expect(scalePatches()).toEqual([`${MODEL} → 2`]);
    await waitFor(() => modelPodsReady(2), "two ready Model pods");
    // The drained replica exited 0 (the kubelet restarted it, idle and not ready) before the count went down; the ReplicaSet then deleted that pod.
    // This process may hear of that exit after the PATCH (four test files share it): the kernel's word at the delete counts too.
    await waitFor(() => kubelet.events.some((e) => e.startsWith("exit") && / 0$/.test(e)), "the drained replica's exit 0");
    const [exit, del] = [kubelet.events.findIndex((e) => / 0$/.test(e) && e.startsWith("exit")), kubelet.events.findIndex((e) => e.startsWith("delete"))];
    const deleted = kubelet.events[del]!.slice("delete ".length);
    expect(deleted).toBe(kubelet.events[exit]!.split(" ")[1]);
    expect(del > exit || kubelet.deadWhenDeleted.has(deleted)).toBe(true);
    expect(api.deployments.get(MODEL)!.replicas).toBe(2);
    // The relisted watch delivers: the controller saw the pod go.
    await controller.line(/Kubernetes lists ready replicas: .*default\/Model 2/, "the listed count after the relist");
    expect((await model())!.replicas.map((r) => r.state)).toEqual(["RUNNING", "RUNNING"]);
    expect(await ask()).toEqual({ status: 200, body: ANSWER });
  });
});

describe("one owner per count, one controller at a time (API server stand-in)", () => {
  const dirs: TempDir[] = [];
  const apis: KubeApiStandIn[] = [];

  afterAll(async () => {
    if (process.env.SB_DEBUG) for (const r of roles) console.log(`==== ${r.name}\n${r.out}`);
    await endRoles(roles);
    for (const a of apis) await a[Symbol.asyncDispose]();
    for (const d of dirs) await d[Symbol.asyncDispose]();
  });

  const setUp = () => {
    const dir = tempDir("sb-kube-hpa-");
    const api = standIn();
    dirs.push(dir);
    apis.push(api);
    for (const kubeName of BY_KUBE_NAME.keys()) api.addDeployment(kubeName, replicaSelector(kubeName), 1);
    api.calls.length = 0;
    return { api, sa: serviceAccount(dir.path, api), state: join(dir.path, "state") };
  };

  it("under --autoscaler hpa, a PATCH of numReplicas answers 409 naming the HPA, and the target follows the HPA's count on the current revision", async () => {
    const { api, sa, state } = setUp();
    // As in a pod: serve.yaml and revisions.json side by side (the ConfigMap), each deployment's current revision its own Deployment.
    const config = join(sa, "config");
    mkdirSync(config);
    expect((await runCli(["build", TUTORIAL, "-o", join(config, "serve.yaml")])).code).toBe(0);
    const revisions = Object.fromEntries([...BY_KUBE_NAME.keys()].map((k) => [k, { current: `${k}-r0000abcd`, previous: [] }]));
    writeFileSync(join(config, "revisions.json"), JSON.stringify(revisions));
    const REV = revisions[MODEL]!.current;
    for (const { current } of Object.values(revisions)) api.addDeployment(current, replicaSelector(current), 1);
    api.calls.length = 0;
    const args = [...controllerArgs(api, sa, state), "--app-dir", EXAMPLES];
    args[2] = join(config, "serve.yaml");
    const c = start("hpa controller", args, { HOSTNAME: "controller-hpa", ...KUBE_ENV, SERVE_BIN_KUBE_AUTOSCALER: "hpa" });
    const admin = (await c.line(/admin API on (http:\/\/[^\s)]+)/, "its admin address"))[1]!;
    const patch = (body: unknown) => fetch(`${admin}/api/applications/default/deployments/Model`, { method: "PATCH", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    const refused = await waitFor(async () => {
      const res = await patch({ numReplicas: 3 });
      return res.status === 404 ? null : res; // until the application is planned
    }, "the application to be known");
    expect(refused.status).toBe(409);
    const body = (await refused.json()) as { error: string; message: string; owner: string; hpa: string };
    expect(body).toMatchObject({ error: "conflict", owner: "hpa", hpa: REV });
    expect(body.message).toContain(`numReplicas of Model belong to the HorizontalPodAutoscaler ${REV}`);
    expect((await patch({ autoscalingConfig: { minReplicas: 1, maxReplicas: 4 } })).status).toBe(409);
    // The controller's own claims (one per deployment at start) never touch an HPA-owned count.
    expect(api.calls.filter((c) => c.method !== "GET" && c.url.includes("/scale"))).toEqual([]);
    expect(api.deployments.get(REV)!.replicas).toBe(1);
    // The HPA moves the Deployment to 2: the controller's target follows (its claims then wait for the pods Kubernetes adds).
    api.setReplicas(REV, 2);
    const target = async () => (await (await fetch(`${admin}/api/applications`)).json()).applications.default.deployments.Model.targetReplicas;
    await waitFor(async () => (await target()) === 2, "Model's target to follow the HPA");
    await c.line(new RegExp(`the HPA ${REV} set 2 replicas; default/Model follows`), "the log line");
    expect(api.calls.filter((c) => c.method === "PATCH")).toEqual([]);
  });

  it("a second controller waits, not serving, while the first (the compiled binary) holds the Lease", async () => {
    const { api, sa, state } = setUp();
    const first = start("first controller", controllerArgs(api, sa, state), { HOSTNAME: "controller-1", ...KUBE_ENV }, true);
    await first.line(/admin API on/, "its admin address");
    const second = start("second controller", controllerArgs(api, sa, `${state}-2`), { HOSTNAME: "controller-2", ...KUBE_ENV });
    await second.line(/another controller holds the Lease serve-bin-controller; waiting for it/, "it to wait");
    expect(second.out).not.toContain("control links on");
    expect(api.leases.get("serve-bin-controller")!.spec.holderIdentity).toBe("controller-1");
    second.proc.kill("SIGTERM");
    first.proc.kill("SIGTERM");
    expect(await Promise.all([first.proc.exited, second.proc.exited])).toEqual([0, 143]);
  });

  it("refuses flags and environment that cannot work, saying what to give", async () => {
    const { api, sa, state } = setUp();
    const noState = start("no state dir", controllerArgs(api, sa, state).filter((a, i, all) => a !== "--state-dir" && all[i - 1] !== "--state-dir"));
    expect(await noState.proc.exited).toBe(2);
    expect(noState.out).toContain("--engine kubernetes needs --state-dir");
    const badOwner = start("bad autoscaler", controllerArgs(api, sa, state), { SERVE_BIN_KUBE_AUTOSCALER: "keda" });
    expect(await badOwner.proc.exited).toBe(2);
    expect(badOwner.out).toContain('SERVE_BIN_KUBE_AUTOSCALER is "keda": set it to serve-bin or hpa');
    const noCreds = start("no credentials", controllerArgs(api, join(sa, "nowhere"), state));
    expect(await noCreds.proc.exited).toBe(2);
    expect(noCreds.out).toContain("nowhere/namespace (ENOENT): the controller needs its ServiceAccount token there");
    const bare = new KubeApiStandIn(); // nothing applied: no Lease
    apis.push(bare);
    const [bareDir, tokenDir] = [tempDir("sb-kube-bare-"), tempDir("sb-kube-tok-")];
    dirs.push(bareDir, tokenDir);
    const noLease = start("no Lease", controllerArgs(bare, serviceAccount(bareDir.path, bare), state), KUBE_ENV);
    expect(await noLease.proc.exited).toBe(1);
    expect(noLease.out).toContain("the Lease serve-bin-controller is not in namespace serving: apply the manifests first (kubectl apply -k DIR)");
    const wrongToken = serviceAccount(tokenDir.path, api);
    writeFileSync(join(wrongToken, "token"), "not-the-token");
    const refused = start("refused token", controllerArgs(api, wrongToken, state), KUBE_ENV);
    expect(await refused.proc.exited).toBe(1);
    expect(refused.out).toContain("the API server refused the controller's ServiceAccount (401)");
    const swarmish = start("kube flag on swarm", ["controller", "--config", TUTORIAL, "--engine", "static", "--kube-api", api.url]);
    expect(await swarmish.proc.exited).toBe(2);
    expect(swarmish.out).toContain("--kube-api and --kube-credentials are for --engine kubernetes");
  });
});

describe("a new revision takes over from the old one pod by pod (API server stand-in, real role processes)", () => {
  const OLD = `${MODEL}-r0000dead`;
  const NEW = `${MODEL}-r0000beef`;
  const own: Role[] = [];
  let dir: TempDir;
  let api: KubeApiStandIn;
  let kubelet: TestKubelet;

  // Each case's processes, stand-in and files go when it ends, passed or failed.
  afterEach(async () => {
    if (process.env.SB_DEBUG) for (const r of own) console.log(`==== ${r.name}\n${r.out}`);
    await endRoles(own.splice(0));
    await kubelet?.[Symbol.asyncDispose]();
    await api?.[Symbol.asyncDispose]();
    await dir?.[Symbol.asyncDispose]();
  });

  it.each([
    { change: "an env or image change (the old pods run the same code)", otherCode: false },
    { change: "a code change (the old pods could not construct this graph)", otherCode: true },
  ])("on $change: never more than one Model pod above the target, an old pod goes only when a new one waits or claims starve, no old pod of other code claimed, served throughout", async ({ otherCode }) => {
    dir = tempDir("sb-kube-roll-");
    api = standIn();
    const sa = serviceAccount(dir.path, api);
    // As built: Model at 2 replicas, its revision changed (r0000dead → r0000beef); the rest unchanged.
    const config = join(dir.path, "config");
    mkdirSync(config);
    expect((await runCli(["build", TUTORIAL, "-o", join(config, "serve.yaml")])).code).toBe(0);
    const yaml = parseYaml(readFileSync(join(config, "serve.yaml"), "utf8")) as { applications: { deployments: { name: string; numReplicas: number }[] }[] };
    yaml.applications[0]!.deployments.find((d) => d.name === "Model")!.numReplicas = 2;
    writeFileSync(join(config, "serve.yaml"), stringifyYaml(yaml));
    const revisions = Object.fromEntries(
      [...BY_KUBE_NAME.keys()].map((k) => [k, k === MODEL ? { current: NEW, previous: [OLD], code: { [NEW]: "code-2", [OLD]: otherCode ? "code-1" : "code-2" } } : { current: `${k}-r0000cafe`, previous: [] }]),
    );
    writeFileSync(join(config, "revisions.json"), JSON.stringify(revisions));

    const role = (name: string, args: string[], env: Record<string, string> = {}) => {
      const r = start(name, args, env);
      own.push(r);
      return r;
    };
    const args = [...controllerArgs(api, sa, join(dir.path, "state")), "--app-dir", EXAMPLES];
    args[2] = join(config, "serve.yaml");
    const controller = role("rollover controller", args, { HOSTNAME: "controller-r", ...KUBE_ENV });
    const control = (await controller.line(/control links on (tcp:\/\/\S+)/, "its control address"))[1]!;
    const deploymentOf = (name: string) => BY_KUBE_NAME.get(name.replace(/-r[0-9a-f]{8}$/, ""))!;
    kubelet = new TestKubelet(
      api,
      (name, link, health) => [BUN, CLI, "replica", "--app", "default", "--deployment", deploymentOf(name), "--listen", `tcp://127.0.0.1:${link}`, "--controller", control, "--health-host", "127.0.0.1", "--health-port", String(health), "--drain-timeout-s", "5"],
      (name) => ({ SERVE_BIN_CLUSTER_TOKEN: SECRET, SERVE_BIN_CLUSTER_TOKEN_FILE: "", SERVE_BIN_REVISION: /-(r[0-9a-f]{8})$/.exec(name)![1]! }),
    );
    // What `kubectl apply` leaves: the old revision still at 2, the new one created at Kubernetes' default of 1.
    api.addDeployment(OLD, { ...replicaSelector(MODEL), "serve-bin.dev/revision": "r0000dead" }, 2);
    for (const [k, d] of BY_KUBE_NAME) if (k !== MODEL) api.addDeployment(revisions[k]!.current, replicaSelector(k), DEPLOYMENTS[d]);
    api.addDeployment(NEW, { ...replicaSelector(MODEL), "serve-bin.dev/revision": "r0000beef" }, 1);
    const modelPods = () => kubelet.of(OLD).length + kubelet.of(NEW).length;
    let most = modelPods();
    const claimedOld = new Set<number>();
    const watch = setInterval(() => {
      most = Math.max(most, modelPods());
      // A replica of the old revision that a claim took is ready (its /-/ready answers 200 only once constructed for a claim).
      for (const p of kubelet.of(OLD)) if (p.ready) claimedOld.add(p.proc.pid);
    }, 5);

    const proxy = role("rollover proxy", ["proxy", "--controller", control, "--host", "127.0.0.1", "--port", "0"]);
    const url = (await proxy.line(/proxy listening on (http:\/\/\S+)/, "its address"))[1]!;
    await waitFor(async () => (await fetch(`${url}/-/ready`)).status === 200, "the proxy to be ready", 60_000);
    let stop = false;
    let ok = 0;
    const failed: string[] = [];
    const load = Promise.all(
      Array.from({ length: 4 }, async () => {
        while (!stop) {
          const res = await postJSON(`${url}/my-dag`, ["5", [1, 2], "sum"]).catch((e) => e as Error);
          const body = res instanceof Response ? await res.text() : String(res);
          if (res instanceof Response && res.status === 200 && body === ANSWER) ok++;
          else failed.push(body);
        }
      }),
    );
    await controller.line(
      otherCode ? /default\/Model: previous revisions run other code and can serve nothing here; down to 0/ : /default\/Model runs on its current revision \S+-r0000beef only/,
      "the rollover to finish",
      120_000,
    );
    await waitFor(() => kubelet.of(OLD).length === 0 && kubelet.of(NEW).length === 2 && kubelet.of(NEW).every((p) => p.ready), "two ready pods of the new revision, none of the old", 60_000);
    const after = ok;
    await waitFor(() => ok >= after + 20, "traffic after the rollover");
    stop = true;
    await load;
    clearInterval(watch);
    console.log(`rollover of Model (2 replicas, ${otherCode ? "other" : "same"} code) under load: ${ok} ok, ${failed.length} failed, at most ${most} Model pods`);
    expect(most).toBeLessThanOrEqual(3);
    expect(failed).toEqual([]);
    // Of other code, no old pod was ever claimed; of the same code, the old pods served until replaced.
    if (otherCode) expect(claimedOld.size).toBe(0);
    else expect(claimedOld.size).toBeGreaterThan(0);
    // The old revision went down one pod at a time; the new one never above what the old left plus one.
    const patches = api.calls.filter((c) => c.method === "PATCH" && c.url.endsWith("/scale")).map((c) => `${c.url.split("/").at(-2)} → ${c.body!.spec.replicas}`);
    expect(patches.filter((p) => p.startsWith(OLD))).toEqual(otherCode ? [`${OLD} → 0`] : [`${OLD} → 1`, `${OLD} → 0`]);
    expect(patches.filter((p) => p.startsWith(NEW))).toEqual([`${NEW} → 2`]);
    const status = (await (await fetch(`${(await controller.line(/admin API on (http:\/\/[^\s)]+)/, "admin"))[1]}/api/applications`)).json()) as any;
    const pids = status.applications.default.deployments.Model.replicas.map((r: { pid: number }) => r.pid).sort();
    expect(pids).toEqual(kubelet.of(NEW).map((p) => p.proc.pid).sort());
  }, 180_000);
});
