/**
 * The Kubernetes engine (src/cluster/kubernetes/engine.ts) and its
 * EndpointSlice feed, against the API server stand-in on Bun.serve
 * (test/kube-api-standin.ts; no real API server can run on these machines).
 * The stand-in also plays the Deployment → pods → EndpointSlice chain, so
 * "replicas found, scaled, one lost" runs through the engine's own code path;
 * the pods themselves are addresses in the slices, not processes.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { KubeClient } from "../src/cluster/kubernetes/client.ts";
import { EndpointSliceFeed, type ReadyAddresses } from "../src/cluster/kubernetes/endpoint-feed.ts";
import { KubernetesEngine, type ReplicaSet } from "../src/cluster/kubernetes/engine.ts";
import { kubeDeploymentName, REPLICA_SLICES_SELECTOR, replicaSelector } from "../src/cluster/kubernetes/names.ts";
import { ServeError, statusOf } from "../src/error.ts";
import { waitFor } from "./harness.ts";
import { KubeApiStandIn } from "./kube-api-standin.ts";

const MODEL = kubeDeploymentName("default", "Model");
const DRIVER = kubeDeploymentName("default", "DAGDriver");
const SLICES = "/apis/discovery.k8s.io/v1/namespaces/serving/endpointslices";

let api: KubeApiStandIn;
let client: KubeClient;

beforeEach(() => {
  api = new KubeApiStandIn();
  api.addDeployment(MODEL, replicaSelector(MODEL), 2);
  api.addDeployment(DRIVER, replicaSelector(DRIVER), 1);
  api.addForeignSlice("someone-elses-web-x1", { "kubernetes.io/service-name": "web" });
  client = new KubeClient({ server: api.url, namespace: api.namespace, token: api.token });
  api.takeCalls();
});
afterEach(async () => {
  await api[Symbol.asyncDispose]();
});

const addresses = (sets: ReplicaSet[], deployment: string) => sets.find((s) => s.deployment === deployment)?.addresses;

describe("EndpointSliceFeed", () => {
  it("lists once, then watches from the list's resourceVersion with bookmarks, for serve-bin's replica slices only", async () => {
    const seen: ReadyAddresses[] = [];
    const feed = new EndpointSliceFeed(client, REPLICA_SLICES_SELECTOR, (r) => seen.push(r)).start();
    await waitFor(() => api.openWatches === 1, "the watch to open");
    expect(api.takeCalls()).toEqual([
      `GET ${SLICES}?labelSelector=app.kubernetes.io/part-of=serve-bin,app.kubernetes.io/component=replica`,
      expect.stringMatching(new RegExp(`^GET ${SLICES}\\?labelSelector=app.kubernetes.io/part-of=serve-bin,app.kubernetes.io/component=replica&watch=1&resourceVersion=\\d+&allowWatchBookmarks=true$`)),
    ]);
    expect(seen).toEqual([new Map([[MODEL, ["tcp://10.1.0.10:7000", "tcp://10.1.0.11:7000"]], [DRIVER, ["tcp://10.1.0.12:7000"]]])]);
    await feed.stop();
    await waitFor(() => api.openWatches === 0, "the stand-in to see the watch closed");
  });

  it("resumes a dropped watch from the last resourceVersion it saw, without listing again, and gets what changed meanwhile", async () => {
    const feed = new EndpointSliceFeed(client, REPLICA_SLICES_SELECTOR, () => {}).start();
    await waitFor(() => api.openWatches === 1, "the watch to open");
    api.setReplicas(DRIVER, 2);
    await waitFor(() => feed.current.get(DRIVER)?.length === 2, "the second driver pod");
    api.takeCalls();
    api.dropWatches();
    api.setReplicas(MODEL, 3); // while no watch is open
    await waitFor(() => feed.current.get(MODEL)?.length === 3, "the third model pod, after the drop");
    const calls = api.takeCalls();
    expect(calls).toEqual([expect.stringContaining("&watch=1&resourceVersion=")]);
    expect(feed.stats).toMatchObject({ lists: 1, relists: 0, watches: 2 });
    await feed.stop();
  });

  it.each([
    ["an ERROR event with code 410", false],
    ["an HTTP 410", true],
  ])("lists again when the resourceVersion it resumes from is gone (%s), and ends with the current replicas", async (_how, goneAsHttp) => {
    api.goneAsHttp = goneAsHttp;
    const feed = new EndpointSliceFeed(client, REPLICA_SLICES_SELECTOR, () => {}).start();
    await waitFor(() => api.openWatches === 1, "the watch to open");
    api.dropWatches();
    api.setReplicas(MODEL, 1);
    api.compact(); // the version the feed holds is compacted away
    await waitFor(() => feed.stats.relists === 1 && api.openWatches === 1, "a relist and a new watch", 3000).catch((e) => {
      throw new Error(`${e.message}: ${JSON.stringify(feed.stats)} ${JSON.stringify(api.takeCalls())}`);
    });
    expect(feed.stats).toMatchObject({ lists: 2, relists: 1 });
    expect(feed.current.get(MODEL)).toEqual(["tcp://10.1.0.10:7000"]);
    api.setReplicas(MODEL, 2);
    await waitFor(() => feed.current.get(MODEL)?.length === 2, "the watch after the relist to deliver");
    await feed.stop();
  });

  it("backs off when every list it makes is already gone, instead of listing in a tight loop", async () => {
    const feed = new EndpointSliceFeed(client, REPLICA_SLICES_SELECTOR, () => {}).start();
    await waitFor(() => api.openWatches === 1, "the watch to open");
    api.compact({ current: true });
    api.dropWatches();
    await waitFor(() => feed.stats.relists >= 1, "the first relist");
    const first = performance.now();
    await waitFor(() => feed.stats.relists >= 5, "four more relists");
    // The second relist follows at once; waits of 100, 200 and 500 ms come before the third, fourth and fifth (a lower bound only: a slow machine makes it longer).
    expect(performance.now() - first).toBeGreaterThanOrEqual(700); // 800 less the poll interval of waitFor; without the waits it takes a few ms
    expect(feed.stats.errors).toBe(0);
    await feed.stop();
  });
});

describe("KubernetesEngine", () => {
  const engineFor = (hpa: boolean) =>
    new KubernetesEngine({
      client,
      deployments: [
        { app: "default", deployment: "Model", hpa },
        { app: "default", deployment: "DAGDriver", hpa: false },
      ],
      log: () => {},
    });

  it("finds the replicas, scales a deployment through deployments/scale, and sees one lost, all from the one watch", async () => {
    const engine = engineFor(false);
    let sets: ReplicaSet[] = [];
    engine.onReplicas((s) => (sets = s));
    await waitFor(() => addresses(sets, "Model")?.length === 2, "the two model replicas");
    expect(sets).toEqual([
      { app: "default", deployment: "Model", addresses: ["tcp://10.1.0.10:7000", "tcp://10.1.0.11:7000"] },
      { app: "default", deployment: "DAGDriver", addresses: ["tcp://10.1.0.12:7000"] },
    ]);
    api.takeCalls();
    await engine.scaleNow("default", "Model", 4);
    // The watch that follows the first list may open only now (a CI run saw its GET here): it is not part of the scale.
    expect(api.takeCalls().filter((c) => !c.includes("&watch=1&"))).toEqual([`GET /apis/apps/v1/namespaces/serving/deployments/${MODEL}/scale`, `PATCH /apis/apps/v1/namespaces/serving/deployments/${MODEL}/scale`]);
    await waitFor(() => addresses(sets, "Model")?.length === 4, "four model replicas");
    api.loseReady(MODEL, "10.1.0.11");
    await waitFor(() => addresses(sets, "Model")?.length === 3, "the lost replica to leave the set");
    expect(addresses(sets, "Model")).not.toContain("tcp://10.1.0.11:7000");
    expect(engine.discoveryStats).toMatchObject({ lists: 1, errors: 0 });
    await engine.stop();
  });

  it("sends the latest count when several arrive while one is in flight, and keeps a failed scale's error", async () => {
    const engine = engineFor(false);
    engine.scale("default", "Model", 3);
    engine.scale("default", "Model", 5);
    await engine.scaleNow("default", "Model", 6);
    expect(api.deployments.get(MODEL)!.replicas).toBe(6);
    api.deployments.delete(MODEL); // someone deleted the Deployment
    await engine.scaleNow("default", "Model", 2);
    expect(engine.errors.get(MODEL)).toContain(`deployments.apps "${MODEL}" not found`);
    await engine.stop();
  });

  it("refuses numReplicas and autoscalingConfig with 409 naming the HPA when an HPA owns the deployment, and lets the rest through", () => {
    const engine = engineFor(true);
    const refused = (() => {
      try {
        engine.checkPatch("default", "Model", { numReplicas: 3 });
      } catch (e) {
        return e as ServeError;
      }
    })();
    expect(refused).toBeInstanceOf(ServeError);
    expect([refused!.code, statusOf[refused!.code], refused!.body]).toEqual(["conflict", 409, { owner: "hpa", hpa: MODEL }]);
    expect(refused!.message).toContain(`belong to the HorizontalPodAutoscaler ${MODEL}`);
    expect(() => engine.checkPatch("default", "Model", { autoscalingConfig: { minReplicas: 1 } })).toThrow("autoscalingConfig of Model belong to the HorizontalPodAutoscaler");
    expect(() => engine.checkPatch("default", "Model", {})).not.toThrow();
    expect(() => engine.checkPatch("default", "DAGDriver", { numReplicas: 3 })).not.toThrow();
    expect(() => engine.scaleNow("default", "Model", 2)).toThrow(`belongs to the HorizontalPodAutoscaler ${MODEL}`);
    expect(api.takeCalls()).toEqual([]);
  });

  it("coalesces the counts of one reconcile pass into one PATCH, never lowers a count with atLeast, and lowers it with exactly", async () => {
    const engine = engineFor(false);
    const scales = () => api.takeCalls().map((c) => c.split(" ")[0]);
    // Three claims in one pass: one read, one PATCH, to the last count.
    engine.scale("default", "Model", 3, "atLeast");
    engine.scale("default", "Model", 4, "atLeast");
    await engine.scaleNow("default", "Model", 5, "atLeast");
    expect([scales(), api.deployments.get(MODEL)!.replicas]).toEqual([["GET", "PATCH"], 5]);
    expect(api.calls.length).toBe(0);
    // A claim that starts again (a replica lost): the count is already there, nothing is written.
    await engine.scaleNow("default", "Model", 4, "atLeast");
    expect([scales(), api.deployments.get(MODEL)!.replicas]).toEqual([["GET"], 5]);
    // A stop the controller chose, then a start in the same pass: the exact count stands.
    engine.scale("default", "Model", 3, "exactly");
    await engine.scaleNow("default", "Model", 4, "atLeast");
    expect([scales(), api.deployments.get(MODEL)!.replicas]).toEqual([["GET", "PATCH"], 4]);
    await engine.stop();
  });

  it("leaves a count an HPA owns alone, and tells who listens which replica addresses left the ready set", async () => {
    const engine = engineFor(true);
    engine.scale("default", "Model", 7, "exactly");
    await Bun.sleep(0);
    const lost: string[] = [];
    engine.onLost((a) => lost.push(a));
    let sets: ReplicaSet[] = [];
    engine.onReplicas((s) => (sets = s));
    await waitFor(() => addresses(sets, "Model")?.length === 2, "the two model replicas");
    api.loseReady(MODEL, "10.1.0.10");
    await waitFor(() => lost.length === 1, "the lost address");
    expect(lost).toEqual(["tcp://10.1.0.10:7000"]);
    expect(api.takeCalls().filter((c) => c.includes("/scale"))).toEqual([]);
    await engine.stop();
  });

  it("writes the applied config into the ConfigMap's serve.yaml, so kubectl diff shows the drift", async () => {
    api.putConfigMap("serve-bin-config", { "serve.yaml": "applications: []\n" });
    const engine = engineFor(false);
    await engine.saveConfig("applications:\n  - name: default\n");
    expect(api.configMaps.get("serve-bin-config")!.data).toEqual({ "serve.yaml": "applications:\n  - name: default\n" });
    expect(api.takeCalls()).toEqual(["GET /api/v1/namespaces/serving/configmaps/serve-bin-config", "PUT /api/v1/namespaces/serving/configmaps/serve-bin-config"]);
  });
});
