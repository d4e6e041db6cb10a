/**
 * The Kubernetes API client (src/cluster/kubernetes/client.ts) against an API
 * server stand-in on Bun.serve (test/kube-api-standin.ts): no real API server
 * can run on these machines, so these tests hold the client to the exact
 * calls it makes, and the stand-in to the API server's answers to them
 * (409 on a stale resourceVersion, 401 without the token, 404 by name).
 */
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { KubeApiError, KubeClient } from "../src/cluster/kubernetes/client.ts";
import { inClusterConfig } from "../src/cluster/kubernetes/in-cluster.ts";
import { tempDir } from "./harness.ts";
import { KubeApiStandIn } from "./kube-api-standin.ts";

const api = new KubeApiStandIn();
const sa = tempDir("sb-kube-sa-");
writeFileSync(join(sa.path, "token"), `${api.token}\n`);
writeFileSync(join(sa.path, "namespace"), api.namespace);
afterAll(async () => {
  await api[Symbol.asyncDispose]();
  await sa[Symbol.asyncDispose]();
});

const SCALE = `/apis/apps/v1/namespaces/serving/deployments/default-model-8a1239/scale`;
const CM = `/api/v1/namespaces/serving/configmaps/serve-bin-config`;
let client: KubeClient;

beforeEach(() => {
  api.addDeployment("default-model-8a1239", { "app.kubernetes.io/part-of": "serve-bin" }, 1);
  api.putConfigMap("serve-bin-config", { "serve.yaml": "applications: []\n", other: "kept" });
  client = new KubeClient(inClusterConfig({ dir: sa.path, env: {}, server: api.url }));
  api.takeCalls();
});

describe("inClusterConfig", () => {
  it("reads the namespace, the token and (for https) the CA from the ServiceAccount directory, and the server from the pod's environment", () => {
    writeFileSync(join(sa.path, "ca.crt"), "-----BEGIN CERTIFICATE-----\nstand-in\n-----END CERTIFICATE-----\n");
    const c = inClusterConfig({ dir: sa.path, env: { KUBERNETES_SERVICE_HOST: "10.96.0.1", KUBERNETES_SERVICE_PORT: "443" } });
    expect({ ...c, token: (c.token as () => string)() }).toEqual({
      server: "https://10.96.0.1:443",
      namespace: "serving",
      ca: "-----BEGIN CERTIFICATE-----\nstand-in\n-----END CERTIFICATE-----",
      token: api.token,
    });
    expect(inClusterConfig({ dir: sa.path, env: { KUBERNETES_SERVICE_HOST: "fd00::1", KUBERNETES_SERVICE_PORT: "443" } }).server).toBe("https://[fd00::1]:443");
  });

  it("says what is missing outside a pod or without a token", () => {
    expect(() => inClusterConfig({ dir: sa.path, env: {} })).toThrow("KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set");
    expect(() => inClusterConfig({ dir: join(sa.path, "nowhere"), env: {}, server: api.url })).toThrow(/cannot read .*nowhere\/namespace \(ENOENT\).*automountServiceAccountToken/);
  });

  it("re-reads the token file on every request, as Kubernetes rotates it", async () => {
    writeFileSync(join(sa.path, "token"), "expired");
    const refused = await client.getScale("default-model-8a1239").catch((e) => e);
    expect([refused instanceof KubeApiError, refused.status, refused.reason]).toEqual([true, 401, "Unauthorized"]);
    writeFileSync(join(sa.path, "token"), api.token);
    expect((await client.getScale("default-model-8a1239")).spec.replicas).toBe(1);
  });
});

const openssl = spawnSync("openssl", ["version"], { encoding: "utf8" });
const noOpenssl = openssl.status === 0 ? null : `openssl is not on PATH (${openssl.error?.message})`;
if (noOpenssl) console.warn(`\n*** test/kubernetes-client.test.ts: the HTTPS test with the ServiceAccount's CA is SKIPPED: ${noOpenssl}. ***\n`);

describe.skipIf(noOpenssl !== null)("over HTTPS", () => {
  it("trusts the API server through the CA from ca.crt, and refuses it without that CA", async () => {
    await using dir = tempDir("sb-kube-tls-");
    const [cert, key] = [join(dir.path, "ca.crt"), join(dir.path, "key.pem")];
    const made = spawnSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=kubernetes", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert], { encoding: "utf8" });
    expect(made.status).toBe(0);
    await using tls = new KubeApiStandIn({ cert: readFileSync(cert, "utf8"), key: readFileSync(key, "utf8") });
    tls.addDeployment("m", {}, 2);
    writeFileSync(join(dir.path, "token"), tls.token);
    writeFileSync(join(dir.path, "namespace"), tls.namespace);
    const port = String(tls.server.port);
    const trusted = new KubeClient(inClusterConfig({ dir: dir.path, env: { KUBERNETES_SERVICE_HOST: "127.0.0.1", KUBERNETES_SERVICE_PORT: port } }));
    expect((await trusted.getScale("m")).spec.replicas).toBe(2);
    const untrusted = new KubeClient({ server: tls.url, namespace: tls.namespace, token: tls.token });
    const refused = await untrusted.getScale("m").catch((e) => e);
    expect(refused).toBeInstanceOf(Error);
    expect(refused).not.toBeInstanceOf(KubeApiError); // refused by TLS, before any HTTP answer
  });
});

describe("KubeClient.scale", () => {
  it("reads deployments/NAME/scale, then merge-patches spec.replicas with the resourceVersion it read", async () => {
    const rv = String(api.deployments.get("default-model-8a1239")!.resourceVersion);
    const scale = await client.scale("default-model-8a1239", 3);
    expect(scale.spec.replicas).toBe(3);
    expect(api.calls.map((c) => [c.method, c.url, c.contentType, c.body])).toEqual([
      ["GET", SCALE, null, undefined],
      ["PATCH", SCALE, "application/merge-patch+json", { metadata: { resourceVersion: rv }, spec: { replicas: 3 } }],
    ]);
    expect(api.deployments.get("default-model-8a1239")!.replicas).toBe(3);
  });

  it("sends no PATCH when the count is already there", async () => {
    await client.scale("default-model-8a1239", 1);
    expect(api.takeCalls()).toEqual([`GET ${SCALE}`]);
  });

  it("retries a PATCH refused with 409 because someone scaled between its read and its write, and ends at its own count", async () => {
    api.afterGet(SCALE, () => api.setReplicas("default-model-8a1239", 5)); // e.g. kubectl scale, right after our GET
    await client.scale("default-model-8a1239", 2);
    const patches = api.calls.filter((c) => c.method === "PATCH");
    expect(api.takeCalls()).toEqual([`GET ${SCALE}`, `PATCH ${SCALE}`, `GET ${SCALE}`, `PATCH ${SCALE}`]);
    expect(patches[0]!.body!.metadata.resourceVersion).not.toBe(patches[1]!.body!.metadata.resourceVersion);
    expect(api.deployments.get("default-model-8a1239")!.replicas).toBe(2);
  });

  it("gives up after conflictRetries with the 409, and names an unknown Deployment in a 404", async () => {
    const impatient = new KubeClient({ ...inClusterConfig({ dir: sa.path, env: {}, server: api.url }), conflictRetries: 2 });
    const interfere = () => api.setReplicas("default-model-8a1239", api.deployments.get("default-model-8a1239")!.replicas + 1);
    api.afterGet(SCALE, () => (interfere(), api.afterGet(SCALE, interfere)));
    const conflict = await impatient.scale("default-model-8a1239", 9).catch((e) => e);
    expect([conflict.status, conflict.reason, api.takeCalls().length]).toEqual([409, "Conflict", 4]);
    const missing = await client.scale("nope", 1).catch((e) => e);
    expect([missing.status, missing.message]).toEqual([404, expect.stringContaining('deployments.apps "nope" not found')]);
  });
});

describe("KubeClient.updateConfigMap", () => {
  it("reads the ConfigMap and PUTs it back whole with the resourceVersion read and the data changed", async () => {
    const rv = api.configMaps.get("serve-bin-config")!.metadata.resourceVersion;
    await client.updateConfigMap("serve-bin-config", (d) => ({ ...d, "serve.yaml": "changed: 1\n" }));
    expect(api.calls.map((c) => [c.method, c.url, c.contentType, c.body?.metadata?.resourceVersion])).toEqual([
      ["GET", CM, null, undefined],
      ["PUT", CM, "application/json", rv],
    ]);
    expect(api.configMaps.get("serve-bin-config")!.data).toEqual({ "serve.yaml": "changed: 1\n", other: "kept" });
  });

  it("on 409 reads again and applies the change on top of the other writer's", async () => {
    api.afterGet(CM, () => api.putConfigMap("serve-bin-config", { "serve.yaml": "applications: []\n", other: "theirs" }));
    await client.updateConfigMap("serve-bin-config", (d) => ({ ...d, "serve.yaml": "ours: 1\n" }));
    expect(api.takeCalls()).toEqual([`GET ${CM}`, `PUT ${CM}`, `GET ${CM}`, `PUT ${CM}`]);
    expect(api.configMaps.get("serve-bin-config")!.data).toEqual({ "serve.yaml": "ours: 1\n", other: "theirs" });
  });
});
