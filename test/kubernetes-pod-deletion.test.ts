/**
 * Kubernetes deletes serving replica pods under load (as `kubectl scale`, an
 * HPA or a node drain does: SIGTERM to the pod, its endpoint going) and no
 * request fails: the replica tells the controller it is leaving and drains,
 * but proxies still route to it until their next snapshot; once drained it
 * tells each caller so (replica/farewell.ts) and leaves only when they hung
 * up, so a call still on its way goes to another replica instead of being
 * lost with the process. A real `serve-bin controller --engine kubernetes`,
 * proxy and replica processes; the API server stand-in
 * (test/kube-api-standin.ts) and the test kubelet (test/kube-kubelet.ts)
 * play Kubernetes — no real API server runs on these machines.
 */
import { afterEach, describe, expect, it } from "vitest";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { kubeDeploymentName, replicaSelector } from "../src/cluster/kubernetes/names.ts";
import { BUN, CLI, postJSON, tempDir, waitFor, type TempDir } from "./harness.ts";
import type { KubeApiStandIn } from "./kube-api-standin.ts";
import { TestKubelet } from "./kube-kubelet.ts";
import { kubeController, steadyLoad } from "./kube-roles.ts";
import { endRoles, startRole, type Role } from "./role-process.ts";

const SECRET = "kubernetes-pod-deletion-secret-0123456789";
const GRAPH = `import { DAGDriver, deployment, InputNode, jsonRequest } from "serve-bin";
export const Model = deployment(class Model { predict(_req: unknown) { return "ok"; } });
const input = new InputNode();
export default DAGDriver.bind(Model.bind().predict.bind(input), { httpAdapter: jsonRequest });
`;
const DEPLOYMENTS = ["Model", "DAGDriver"];
const service = (d: string) => kubeDeploymentName("default", d);
const DRIVER = service("DAGDriver");
/** Pods deleted one after another (none of them a failure: the controller claims a replacement at once, no backoff). */
const DELETIONS = 4;

describe("pods Kubernetes deletes under load (API server stand-in, real role processes)", () => {
  const roles: Role[] = [];
  let dir: TempDir;
  let api: KubeApiStandIn;
  let kubelet: TestKubelet;

  afterEach(async () => {
    if (process.env.SB_DEBUG) {
      for (const r of roles) console.log(`==== ${r.name}\n${r.out}`);
      console.log(`==== kubelet\n${kubelet?.events.join("\n")}`);
    }
    await endRoles(roles.splice(0));
    await kubelet?.[Symbol.asyncDispose]();
    await api?.[Symbol.asyncDispose]();
    await dir?.[Symbol.asyncDispose]();
  });

  it("loses no request when serving DAGDriver pods get SIGTERM while the proxy still routes to them", async () => {
    dir = tempDir("sb-kube-delete-");
    writeFileSync(join(dir.path, "graph.ts"), GRAPH);
    const config = join(dir.path, "config");
    mkdirSync(config);
    writeFileSync(join(config, "serve.yaml"), `applications:\n  - name: default\n    importPath: ../graph.ts\n    deployments:\n${DEPLOYMENTS.map((d) => `      - { name: ${d}, numReplicas: 3 }\n`).join("")}`);
    const started = await kubeController({ roles, secret: SECRET, dir: dir.path, config: join(config, "serve.yaml"), hostname: "controller-d" });
    api = started.api;
    const { control, admin } = started;
    const deploymentOf = (name: string) => DEPLOYMENTS.find((d) => name.startsWith(service(d)))!;
    kubelet = new TestKubelet(
      api,
      (name, link, health) => [BUN, CLI, "replica", "--app", "default", "--deployment", deploymentOf(name), "--listen", `tcp://127.0.0.1:${link}`, "--controller", control, "--health-host", "127.0.0.1", "--health-port", String(health), "--drain-timeout-s", "5"],
      { SERVE_BIN_CLUSTER_TOKEN: SECRET, SERVE_BIN_CLUSTER_TOKEN_FILE: "" },
    );
    for (const d of DEPLOYMENTS) api.addDeployment(service(d), replicaSelector(service(d)), 3);
    const proxy = startRole(roles, SECRET, "proxy", ["proxy", "--controller", control, "--host", "127.0.0.1", "--port", "0"]);
    const url = (await proxy.line(/proxy listening on (http:\/\/\S+)/, "its address"))[1]!;
    const threeReady = () => kubelet.of(DRIVER).filter((p) => p.ready).length === 3 && api.deployments.get(DRIVER)!.replicas === 3;
    await waitFor(async () => (await fetch(`${url}/-/ready`)).status === 200 && threeReady(), "the proxy and three DAGDriver pods ready", 60_000);

    const load = steadyLoad(4, () => postJSON(url, {}), (res, body) => res.status === 200 && body.includes("ok"));
    try {
      for (let i = 0; i < DELETIONS; i++) {
        const before = load.ok;
        // Traffic on every pod first, then Kubernetes takes one away (the kubelet SIGTERMs the newest serving pod);
        // the controller starts a replacement, which brings the count back to 3.
        await waitFor(() => threeReady() && load.ok >= before + 200, "three serving DAGDriver pods with traffic through them", 120_000);
        api.setReplicas(DRIVER, 2);
      }
      await waitFor(threeReady, "the last replacement", 120_000);
    } finally {
      await load.stop();
    }
    console.log(`pod deletion under load: ${DELETIONS} serving DAGDriver pods deleted, ${load.ok} requests ok, ${load.failed.length} failed`);
    expect(kubelet.events.filter((e) => e.startsWith("delete")).length).toBeGreaterThanOrEqual(DELETIONS);
    expect(load.failed).toEqual([]);
    // A deleted pod is not a crash: no restart counted, no backoff, and the deployment never UNHEALTHY for it.
    const status = ((await (await fetch(`${admin}/api/applications`)).json()) as any).applications.default;
    expect(status.deployments.DAGDriver).toMatchObject({ restarts: 0, backoffS: 0, status: "HEALTHY" });
    expect(status.status).toBe("RUNNING");
  }, 300_000);
});
