/**
 * `serve-bin build --target kubernetes`: the manifests for the tutorial and
 * the content graph, read back from the files the CLI writes, validated
 * offline against the Kubernetes 1.30 schemas (kubernetes-models), rendered
 * by `kubectl kustomize` (skipped loudly where kubectl is absent; `kubectl
 * apply --dry-run=client` needs an API server, which cannot run here), and
 * linted (selectors, probes, grace periods, HPA ownership, RBAC verbs).
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments, parse as parseYaml } from "yaml";
import { beforeAll, describe, expect, it } from "vitest";
import type { Deployment } from "kubernetes-types/apps/v1";
import { hpaOwns, kubernetesManifests, quantity } from "../src/cli/kubernetes-manifests.ts";
import { kubeDeploymentName } from "../src/cluster/kubernetes/names.ts";
import { resolveDeployment } from "../src/config/diff.ts";
import { parseConfig, type DeploymentOptions, type ResolvedServeConfig } from "../src/config/schema.ts";
import { EXAMPLES, runCli, tempDir, type TempDir } from "./harness.ts";
import { CONTROLLER_VERBS, lint, schemaError } from "./kubernetes-lint.ts";

type Obj = Record<string, any>;
const IMAGE = "registry.example:5000/team/graph:1";

const kubectl = spawnSync("kubectl", ["version", "--client"], { encoding: "utf8" });
const noKubectl = kubectl.status === 0 ? null : `kubectl is not on PATH (${kubectl.error?.message ?? kubectl.stderr})`;
if (noKubectl) console.warn(`\n*** test/kubernetes-manifests.test.ts: \`kubectl kustomize\` rendering SKIPPED: ${noKubectl}. ***\n`);

/** Every object in DIR's manifests (not the kustomization), as the CLI wrote them. */
function readObjects(dir: string): Obj[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".yaml") && f !== "kustomization.yaml")
    .flatMap((f) => parseAllDocuments(readFileSync(join(dir, f), "utf8")).map((d) => d.toJS() as Obj));
}

const kustomize = (dir: string) => spawnSync("kubectl", ["kustomize", dir], { encoding: "utf8", timeout: 60_000 });
const byKind = (objects: Obj[], kind: string) => objects.filter((o) => o.kind === kind);
const named = (objects: Obj[], kind: string, name: string) => objects.find((o) => o.kind === kind && o.metadata.name === name)!;
/** A serve deployment's Deployment (of its one revision here), found by its Service's name. */
const deploymentOf = (objects: Obj[], service: string) => objects.find((o) => o.kind === "Deployment" && o.metadata.labels["app.kubernetes.io/name"] === service)!;
const REVISION = /^(.*)-r[0-9a-f]{8}$/;

describe.each([
  { graph: "tutorial", autoscaler: "serve-bin", deployments: 6, namespace: undefined },
  { graph: "content", autoscaler: "hpa", deployments: 11, namespace: "content-1" },
])("serve-bin build examples/$graph --target kubernetes --autoscaler $autoscaler --namespace $namespace", ({ graph, autoscaler, deployments: count, namespace }) => {
  const flags = ["--target", "kubernetes", "--image", IMAGE, "--autoscaler", autoscaler, ...(namespace ? ["--namespace", namespace] : [])];
  let dir: TempDir;
  let objects: Obj[];
  let deployments: Obj[];

  beforeAll(async () => {
    dir = tempDir("sb-kube-");
    const local = await runCli(["build", join(EXAMPLES, graph, "graph.ts")]);
    expect(local.code).toBe(0);
    deployments = parseYaml(local.stdout).applications[0].deployments;
    const r = await runCli(["build", join(EXAMPLES, graph, "graph.ts"), ...flags, "-o", dir.path]);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: expect.stringContaining(`apply with kubectl apply -k ${dir.path}`) });
    objects = readObjects(dir.path);
    return () => dir[Symbol.asyncDispose]();
  });

  it("writes one Deployment and one headless Service per serve deployment, plus the proxy's and the controller's", () => {
    expect(deployments.length).toBe(count);
    const names = deployments.map((d) => kubeDeploymentName("default", d.name));
    // Each named <Service>-r<revision>: a new revision of the code is a new Deployment beside the old one.
    expect(byKind(objects, "Deployment").map((o) => o.metadata.name.replace(REVISION, "$1")).sort()).toEqual([...names, "serve-bin-controller", "serve-bin-proxy"].sort());
    for (const name of names) expect(named(objects, "Service", name).spec.clusterIP).toBe("None");
    expect(byKind(objects, "HorizontalPodAutoscaler").length).toBe(autoscaler === "hpa" ? count : 0);
    expect(objects.map((o) => o.kind).filter((k) => !["Deployment", "Service", "HorizontalPodAutoscaler"].includes(k)).sort()).toEqual([
      "ConfigMap",
      "Lease",
      "NetworkPolicy",
      "Role",
      "RoleBinding",
      "ServiceAccount",
    ]);
  });

  it("validates every object against the Kubernetes schemas", () => {
    expect(objects.map(schemaError).filter(Boolean)).toEqual([]);
  });

  it("passes the lints: selectors match template labels, probes and grace periods, no spec.replicas beside an HPA, RBAC exactly the verbs needed", () => {
    expect(lint(objects)).toEqual([]);
    expect(named(objects, "Role", "serve-bin-controller").rules.find((r: Obj) => r.resources[0] === "deployments/scale").resourceNames.sort()).toEqual(
      deployments.map((d) => deploymentOf(objects, kubeDeploymentName("default", d.name)).metadata.name).sort(),
    );
  });

  it("takes each replica Deployment's count, grace period, probes and role flags from the config, and gives it no API credentials", () => {
    for (const d of deployments) {
      const k = deploymentOf(objects, kubeDeploymentName("default", d.name));
      const pod = k.spec.template.spec;
      const c = pod.containers[0];
      expect({
        replicas: k.spec.replicas,
        grace: pod.terminationGracePeriodSeconds,
        automount: pod.automountServiceAccountToken,
        args: c.args,
        liveness: [c.livenessProbe.httpGet.path, c.livenessProbe.periodSeconds, c.livenessProbe.timeoutSeconds],
        ready: c.readinessProbe.httpGet,
        annotations: k.metadata.annotations,
      }).toEqual({
        replicas: autoscaler === "hpa" ? undefined : d.numReplicas,
        grace: Math.ceil(d.gracefulShutdownTimeoutS) + 2,
        automount: false,
        args: ["replica", "--app", "default", "--deployment", d.name, "--listen", "tcp://0.0.0.0:7000", "--controller", "tcp://serve-bin-controller:7070", "--health-port", "8000", "--drain-timeout-s", String(d.gracefulShutdownTimeoutS)],
        liveness: ["/-/healthz", Math.ceil(d.healthCheckPeriodS), Math.ceil(d.healthCheckTimeoutS)],
        ready: { path: "/-/ready", port: 8000 },
        annotations: { "serve-bin.dev/app": "default", "serve-bin.dev/deployment": d.name },
      });
    }
  });

  it("puts the config in the ConfigMap and its sha256 on every pod template, as the containers read it", () => {
    const cm = named(objects, "ConfigMap", "serve-bin-config");
    const hash = createHash("sha256").update(cm.data["serve.yaml"]).digest("hex");
    for (const d of byKind(objects, "Deployment")) expect(d.spec.template.metadata.annotations["serve-bin.dev/config-hash"]).toBe(hash);
    const config = parseYaml(cm.data["serve.yaml"]);
    expect(parseConfig(config).ok).toBe(true);
    expect([config.applications[0].importPath, config.admin.host, config.proxy.errorDetail]).toEqual(["/app/graph.ts", "0.0.0.0", "message"]);
  });

  it("runs the controller as the Kubernetes engine with its admin token from the Secret, state on an emptyDir, one replica, recreated rather than overlapped", () => {
    const c = named(objects, "Deployment", "serve-bin-controller");
    const pod = c.spec.template.spec;
    expect(pod.containers[0].args).toEqual([
      "controller", "--config", "/etc/serve-bin/serve.yaml", "--engine", "kubernetes", "--state-dir", "/var/lib/serve-bin", "--listen", "tcp://0.0.0.0:7070",
      "--port", "8000", "--admin-host", "0.0.0.0", "--admin-port", "8265", "--admin-token-file", "/var/run/serve-bin/admin-token/token",
    ]);
    expect([c.spec.replicas, c.spec.strategy, pod.volumes.map((v: Obj) => v.name)]).toEqual([1, { type: "Recreate" }, ["config", "cluster-token", "admin-token", "state"]]);
    expect(pod.containers[0].env.map((e: Obj) => e.name)).toEqual(["SERVE_BIN_CLUSTER_TOKEN_FILE", "SERVE_BIN_KUBE_NAMESPACE", "SERVE_BIN_KUBE_CONFIGMAP", "SERVE_BIN_KUBE_LEASE", "SERVE_BIN_KUBE_AUTOSCALER"]);
    expect(pod.containers[0].env.find((e: Obj) => e.name === "SERVE_BIN_KUBE_AUTOSCALER").value).toBe(autoscaler);
    expect(named(objects, "Service", "serve-bin-controller").spec.ports.map((p: Obj) => p.port)).toEqual([7070, 8265]);
    expect(named(objects, "Service", "serve-bin-proxy").spec.ports).toEqual([{ name: "http", port: 8000, targetPort: "http" }]);
  });

  it("gives only the controller a service account, and admits replica traffic only from serve-bin's pods", () => {
    const withToken = byKind(objects, "Deployment").filter((d) => d.spec.template.spec.automountServiceAccountToken !== false);
    expect(withToken.map((d) => [d.metadata.name, d.spec.template.spec.serviceAccountName])).toEqual([["serve-bin-controller", "serve-bin-controller"]]);
    expect(named(objects, "RoleBinding", "serve-bin-controller").subjects).toEqual([{ kind: "ServiceAccount", name: "serve-bin-controller", namespace: namespace ?? "serve-bin" }]);
    expect(named(objects, "NetworkPolicy", "serve-bin-replicas").spec).toEqual({
      podSelector: { matchLabels: { "app.kubernetes.io/part-of": "serve-bin", "app.kubernetes.io/component": "replica" } },
      policyTypes: ["Ingress"],
      ingress: [{ from: [{ podSelector: { matchLabels: { "app.kubernetes.io/part-of": "serve-bin" } } }] }],
    });
  });

  it("creates the token files once, readable by the owner only, and keeps them on a rebuild", async () => {
    const before = readFileSync(join(dir.path, "cluster-token"), "utf8");
    expect(before).toMatch(/^[0-9a-f]{64}$/);
    expect(statSync(join(dir.path, "cluster-token")).mode & 0o777).toBe(0o600);
    const again = await runCli(["build", join(EXAMPLES, graph, "graph.ts"), ...flags, "-o", dir.path]);
    expect(again.code).toBe(0);
    expect(readFileSync(join(dir.path, "cluster-token"), "utf8")).toBe(before);
    expect(readFileSync(join(dir.path, ".gitignore"), "utf8")).toContain("cluster-token\nadmin-token\n");
  });

  it.skipIf(noKubectl !== null)("renders with kubectl kustomize: the Secrets from the token files, every reference renamed, every object valid", () => {
    const r = kustomize(dir.path);
    expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: "" });
    const rendered = parseAllDocuments(r.stdout).map((d) => d.toJS() as Obj);
    // kustomize wraps base64 at 70 columns; the API server's decoder skips the newlines, the schema's "byte" pattern does not.
    for (const s of byKind(rendered, "Secret")) for (const k of Object.keys(s.data)) s.data[k] = s.data[k].replace(/\s+/g, "");
    expect(rendered.length).toBe(objects.length + 2);
    expect(rendered.map(schemaError).filter(Boolean)).toEqual([]);
    expect(lint(rendered)).toEqual([]);
    expect(new Set(rendered.map((o) => o.metadata.namespace))).toEqual(new Set([namespace ?? "serve-bin"]));
    const secrets = byKind(rendered, "Secret");
    expect(secrets.map((s) => s.metadata.name.replace(/-[a-z0-9]{10}$/, "")).sort()).toEqual(["serve-bin-admin-token", "serve-bin-cluster-token"]);
    const token = secrets.find((s) => s.metadata.name.startsWith("serve-bin-cluster-token"))!;
    expect(Buffer.from(token.data.token, "base64").toString()).toBe(readFileSync(join(dir.path, "cluster-token"), "utf8"));
    for (const d of byKind(rendered, "Deployment")) {
      expect(d.spec.template.spec.volumes.find((v: Obj) => v.name === "cluster-token").secret.secretName).toBe(token.metadata.name);
    }
  });
});

describe("kubernetesManifests", () => {
  const base = parseConfig({});
  if (!base.ok) throw new Error("the default config is invalid");
  const auto = resolveDeployment("Model", [{ gracefulShutdownTimeoutS: 7.5, numReplicas: "auto", autoscalingConfig: { minReplicas: 0, maxReplicas: 9, targetOngoingRequests: 1.5, upscaleDelayS: 4, downscaleDelayS: 90 } } as DeploymentOptions]);
  const zero = resolveDeployment("Idle", [{ numReplicas: 0 }]);
  const cfg = { ...base.value, applications: [{ name: "shop", routePrefix: "/", importPath: "/app/g.ts", deployments: [auto, zero] }] } as unknown as ResolvedServeConfig;
  const all = (autoscaler: "hpa" | "serve-bin") => Object.values(kubernetesManifests(cfg, { image: "me/g:1", configYaml: "x: 1\n", autoscaler, namespace: "shop" }).files).flat() as Obj[];

  it("maps an autoscaled deployment to an HPA on ongoing requests per pod, with serve-bin's bounds and delays and a floor of 1", () => {
    const name = deploymentOf(all("hpa"), kubeDeploymentName("shop", "Model")).metadata.name;
    const hpa = named(all("hpa"), "HorizontalPodAutoscaler", name);
    expect(hpa.spec).toEqual({
      scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name },
      minReplicas: 1,
      maxReplicas: 9,
      metrics: [{ type: "Pods", pods: { metric: { name: "serve_bin_deployment_ongoing_requests" }, target: { type: "AverageValue", averageValue: "1500m" } } }],
      behavior: { scaleUp: { stabilizationWindowSeconds: 4 }, scaleDown: { stabilizationWindowSeconds: 90 } },
    });
    expect(named(all("hpa"), "Deployment", name).spec.replicas).toBeUndefined();
    expect(named(all("hpa"), "Deployment", name).spec.template.spec.terminationGracePeriodSeconds).toBe(10);
    expect(all("hpa").map(schemaError).filter(Boolean)).toEqual([]);
  });

  it("leaves spec.replicas out for serve-bin's autoscaler too, keeps a count of 0 without an HPA, and writes no HPA by default", () => {
    expect(deploymentOf(all("serve-bin"), kubeDeploymentName("shop", "Model")).spec.replicas).toBeUndefined();
    expect(deploymentOf(all("hpa"), kubeDeploymentName("shop", "Idle")).spec.replicas).toBe(0);
    expect(byKind(all("hpa"), "HorizontalPodAutoscaler").map((o) => o.metadata.name)).toEqual([deploymentOf(all("hpa"), kubeDeploymentName("shop", "Model")).metadata.name]);
    expect(byKind(all("serve-bin"), "HorizontalPodAutoscaler")).toEqual([]);
    expect([hpaOwns("hpa", { numReplicas: 0 }), hpaOwns("hpa", { numReplicas: 2 }), hpaOwns("serve-bin", { numReplicas: "auto" })]).toEqual([false, true, false]);
    expect([quantity(2), quantity(0.25)]).toEqual(["2", "250m"]);
  });

  it("makes a new revision (a new Deployment) of the deployments a change touches only, and keeps the old ones scalable", () => {
    const opts = { image: "me/g:1", configYaml: "x: 1\n", autoscaler: "serve-bin" as const, namespace: "shop", codeVersions: { shop: "code-1" } };
    const first = kubernetesManifests(cfg, opts);
    const [model, idle] = [kubeDeploymentName("shop", "Model"), kubeDeploymentName("shop", "Idle")];
    expect(first.revisions[model]).toEqual({ current: expect.stringMatching(new RegExp(`^${model}-r[0-9a-f]{8}$`)), previous: [], code: { [first.revisions[model]!.current]: "code-1" } });
    const withEnv = { ...cfg, applications: [{ ...cfg.applications[0]!, deployments: [{ ...auto, env: { MODE: "fast" } }, zero] }] } as ResolvedServeConfig;
    // Model's env changed: Model gets a new revision, Idle keeps its own.
    const second = kubernetesManifests(withEnv, { ...opts, previous: first.revisions });
    expect(second.revisions[model]).toEqual({
      current: expect.not.stringMatching(first.revisions[model]!.current),
      previous: [first.revisions[model]!.current],
      // Each revision's code hash, so the controller claims no pod of other code.
      code: { [second.revisions[model]!.current]: "code-1", [first.revisions[model]!.current]: "code-1" },
    });
    expect(second.revisions[idle]).toEqual(first.revisions[idle]);
    const objects = Object.values(second.files).flat() as Obj[];
    const rules = named(objects, "Role", "serve-bin-controller").rules.find((r: Obj) => r.resources[0] === "deployments/scale").resourceNames;
    expect(rules.sort()).toEqual([second.revisions[model]!.current, first.revisions[model]!.current, second.revisions[idle]!.current].sort());
    expect(JSON.parse(named(objects, "ConfigMap", "serve-bin-config").data["revisions.json"])).toEqual(second.revisions);
    // The Service spans both revisions' pods; each Deployment selects its own.
    const dep = deploymentOf(objects, model);
    expect(named(objects, "Service", model).spec.selector).toEqual({ "app.kubernetes.io/part-of": "serve-bin", "app.kubernetes.io/component": "replica", "app.kubernetes.io/name": model });
    expect(dep.spec.selector.matchLabels["serve-bin.dev/revision"]).toBe(second.revisions[model]!.current.slice(model.length + 1));
    // A new image or new code: every deployment of the application moves.
    const third = kubernetesManifests(cfg, { ...opts, image: "me/g:2", previous: second.revisions });
    expect([third.revisions[model]!.current === second.revisions[model]!.current, third.revisions[idle]!.current === second.revisions[idle]!.current]).toEqual([false, false]);
    expect(third.revisions[model]!.previous).toEqual([second.revisions[model]!.current, first.revisions[model]!.current]);
    expect(lint(objects)).toEqual([]);
    // A fixed count: the new revision beside an old one starts at Kubernetes' default of one pod (the controller raises it as the old go); a count of 0 stays.
    const fixed = (env: Record<string, string>) =>
      ({ ...cfg, applications: [{ ...cfg.applications[0]!, deployments: [{ ...resolveDeployment("Fixed", [{ numReplicas: 2 }]), env }, { ...zero, env }] }] }) as ResolvedServeConfig;
    const v1 = kubernetesManifests(fixed({}), opts);
    const v2 = kubernetesManifests(fixed({ MODE: "fast" }), { ...opts, previous: v1.revisions });
    const all2 = Object.values(v2.files).flat() as Obj[];
    expect(deploymentOf(Object.values(v1.files).flat() as Obj[], kubeDeploymentName("shop", "Fixed")).spec.replicas).toBe(2);
    expect(deploymentOf(all2, kubeDeploymentName("shop", "Fixed")).spec.replicas).toBeUndefined();
    expect(deploymentOf(all2, idle).spec.replicas).toBe(0);
  });

  it("types the objects with kubernetes-types, so a misspelt field does not compile (checked by npm run typecheck)", () => {
    // @ts-expect-error: `replica` is not a DeploymentSpec field (`replicas` is); the typecheck fails if this line compiles.
    const typo: Deployment = { apiVersion: "apps/v1", kind: "Deployment", spec: { replica: 2, selector: {}, template: {} } };
    expect(schemaError(typo as Obj)).toBeNull(); // the schema alone lets unknown fields through: the types are what catch them
  });

  it("names Kubernetes objects as DNS labels that keep distinct serve-bin names apart", () => {
    const names = [kubeDeploymentName("default", "Model"), kubeDeploymentName("default", "model"), kubeDeploymentName("a-b", "c"), kubeDeploymentName("a", "b-c"), kubeDeploymentName("1app", "_".repeat(80))];
    expect(new Set(names).size).toBe(names.length);
    for (const n of names) expect(n).toMatch(/^[a-z]([-a-z0-9]{0,45}[a-z0-9])?$/);
  });

  it("fails the lints on a broken copy, so the lints can fail", () => {
    const objects = JSON.parse(JSON.stringify(all("hpa"))) as Obj[];
    const model = deploymentOf(objects, kubeDeploymentName("shop", "Model"));
    model.spec.replicas = 2;
    model.spec.selector.matchLabels["app.kubernetes.io/name"] = "other";
    delete model.spec.template.spec.containers[0].readinessProbe;
    named(objects, "Role", "serve-bin-controller").rules.push({ apiGroups: [""], resources: ["secrets"], verbs: ["get"] });
    named(objects, "Service", "serve-bin-proxy").spec.selector["app.kubernetes.io/component"] = "nothing";
    expect(lint(objects)).toEqual([
      expect.stringContaining("does not match the pod template's labels"),
      expect.stringContaining("has no readinessProbe"),
      expect.stringContaining("spec.replicas beside an HPA"),
      expect.stringContaining("are not exactly"),
      expect.stringContaining("Service serve-bin-proxy: selector matches 0 Deployments' pods"),
    ]);
    expect(Object.keys(CONTROLLER_VERBS).length).toBe(5);
  });
});

describe("serve-bin build --target kubernetes from the compiled binary", () => {
  it("writes the same manifests as from source", async () => {
    await using fromSource = tempDir("sb-kube-src-");
    await using fromBinary = tempDir("sb-kube-bin-");
    const graph = join(EXAMPLES, "tutorial/graph.ts");
    for (const [dir, compiled] of [[fromSource.path, false], [fromBinary.path, true]] as const) {
      const r = await runCli(["build", graph, "--target", "kubernetes", "--image", IMAGE, "-o", dir, "--autoscaler", "hpa"], { compiled });
      expect({ compiled, code: r.code }).toEqual({ compiled, code: 0 });
    }
    const files = readdirSync(fromSource.path).filter((f) => f.endsWith(".yaml"));
    expect(readdirSync(fromBinary.path).sort()).toEqual(readdirSync(fromSource.path).sort());
    for (const f of files) expect({ f, text: readFileSync(join(fromBinary.path, f), "utf8") }).toEqual({ f, text: readFileSync(join(fromSource.path, f), "utf8") });
  });
});

describe("serve-bin build --target kubernetes refusals", () => {
  it("refuses an unknown --autoscaler, --autoscaler for swarm, and a missing -o, each with exit 2", async () => {
    const tutorial = join(EXAMPLES, "tutorial/graph.ts");
    const cases: [string[], string][] = [
      [["--target", "kubernetes", "--image", "a/b:1", "-o", "x", "--autoscaler", "keda"], "--autoscaler keda is not known; it is serve-bin"],
      [["--target", "swarm", "--image", "a/b:1", "-o", "x", "--autoscaler", "hpa"], "--autoscaler is for --target kubernetes only"],
      [["--target", "kubernetes", "--image", "a/b:1"], "--target kubernetes needs -o DIR: the directory to write the manifests"],
      [["--target", "kubernetes", "-o", "x"], "--target kubernetes needs --image"],
      [["--target", "kubernetes", "--image", "a/b:1", "-o", "x", "--namespace", "My_NS"], '--namespace "My_NS" is not a Kubernetes namespace name'],
      [["--target", "swarm", "--image", "a/b:1", "-o", "x", "--namespace", "ns"], "--namespace is for --target kubernetes only"],
    ];
    for (const [args, message] of cases) {
      const r = await runCli(["build", tutorial, ...args]);
      expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code: 2, stderr: expect.stringContaining(message) });
    }
  });
});

describe("serve-bin build --target kubernetes keeps the previous code's plan", () => {
  it("a rebuild with other code lists both codes' planned graphs in plans.json (ConfigMap and build directory), where the image has the module", async () => {
    await using src = tempDir("sb-kube-plans-src-");
    await using out = tempDir("sb-kube-plans-out-");
    const write = (v: string) =>
      writeFileSync(join(src.path, "graph.ts"), `import { deployment } from "serve-bin";\nexport default deployment(function Echo() { return "${v}"; }).bind();\n`);
    const build = () => runCli(["build", join(src.path, "graph.ts"), "--target", "kubernetes", "--image", IMAGE, "-o", out.path]);
    const read = () => {
      const objects = parseAllDocuments(readFileSync(join(out.path, "config.yaml"), "utf8")).map((d) => d.toJSON() as Obj);
      const data = named(objects, "ConfigMap", "serve-bin-config").data as Record<string, string>;
      return { plans: JSON.parse(data["plans.json"]!), revisions: JSON.parse(data["revisions.json"]!), file: JSON.parse(readFileSync(join(out.path, "plans.json"), "utf8")) };
    };
    write("v1");
    expect((await build()).code).toBe(0);
    const first = read();
    write("v2");
    expect((await build()).code).toBe(0);
    const second = read();
    const service = Object.keys(second.revisions)[0]!;
    const codes = second.revisions[service].code as Record<string, string>;
    // Two codes listed (the current revision's and the previous one's), each with its plan.
    expect(new Set(Object.values(codes)).size).toBe(2);
    expect(Object.keys(second.plans).sort()).toEqual([...new Set(Object.values(codes))].sort());
    expect(second.file).toEqual(second.plans);
    expect(second.plans[codes[second.revisions[service].previous[0]]!]).toEqual(Object.values(first.plans)[0]);
    for (const p of Object.values(second.plans) as { modulePath: string; graph: { deployments: { name: string }[] } }[]) {
      expect(p.modulePath).toBe("/app/graph.ts");
      expect(p.graph.deployments.map((d) => d.name)).toContain("Echo");
    }
  });
});
