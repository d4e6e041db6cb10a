/**
 * The `resources` field of a deployment: validated by the config schema with
 * messages that say what to write, refused in a PATCH (it lives in the built
 * manifests), and written into Kubernetes containers and Swarm services only
 * when the config states it.
 */
import { describe, expect, it } from "vitest";
import { kubernetesManifests } from "../src/cli/kubernetes-manifests.ts";
import { swarmStack } from "../src/cli/swarm-stack.ts";
import { kubeDeploymentName } from "../src/cluster/kubernetes/names.ts";
import { resolveDeployment } from "../src/config/diff.ts";
import { deploymentPatchSchema, parseConfig, validate, type DeploymentOptions, type ResolvedServeConfig } from "../src/config/schema.ts";
import { schemaError } from "./kubernetes-lint.ts";

type Obj = Record<string, any>;

const withResources = (resources: unknown) => parseConfig({ applications: [{ name: "default", importPath: "./g.ts", deployments: [{ name: "Model", resources }] }] });
const issues = (resources: unknown) => {
  const r = withResources(resources);
  return r.ok ? [] : r.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
};

describe("resources in the config", () => {
  it("takes cpu as cores or a quantity, memory with a unit, and a whole GPU count", () => {
    const r = withResources({ cpu: 0.5, memory: "512Mi", gpu: 1 });
    expect(r.ok && r.value.applications[0]!.deployments[0]!.resources).toEqual({ cpu: "0.5", memory: "512Mi", gpu: 1 });
    const m = withResources({ cpu: "500m", memory: "4G" });
    expect(m.ok && m.value.applications[0]!.deployments[0]!.resources).toEqual({ cpu: "500m", memory: "4G" });
  });

  it.each([
    [{ cpu: 0 }, 'cpu is cores: a number above 0 and at most 1024 (e.g. 0.5), or a string like "2" or "500m"'],
    [{ cpu: 5000 }, "cpu is cores: a number above 0 and at most 1024"],
    [{ cpu: "half" }, 'cpu is cores: a number above 0 and at most 1024 (e.g. 0.5), or a string like "2" or "500m"'],
    [{ cpu: "0m" }, "cpu is cores: a number above 0"],
    [{ cpu: "2000000m" }, "at most 1024"],
    [{ memory: 512 }, 'memory is a string with a unit, e.g. "512Mi" or "4Gi"'],
    [{ memory: "512" }, 'memory is a size with a unit: Ki, Mi, Gi, Ti (or k, M, G, T), e.g. "512Mi" or "4Gi"'],
    [{ gpu: 1.5 }, "expected a whole number"],
    [{ gpu: 17 }, "16"],
    [{ gpus: 1 }, "gpu"],
  ])("refuses %j with a message that says what to write", (resources, message) => {
    const found = issues(resources);
    expect(found).toHaveLength(1);
    expect(found[0]).toMatch(/^applications\.0\.deployments\.0\.resources/);
    expect(found[0]).toContain(message);
  });

  it("is refused in a PATCH: it is fixed when the manifests are built", () => {
    const r = validate(deploymentPatchSchema(), { resources: { cpu: 1 } });
    expect(r.ok).toBe(false);
    expect(!r.ok && r.issues.map((i) => `${i.path.join(".")}: ${i.message}`)).toEqual([
      "resources: resources are fixed when the manifests are built: change them in the config and run serve-bin build --target kubernetes (or swarm) again",
    ]);
  });
});

describe("resources in the built manifests", () => {
  const base = parseConfig({});
  if (!base.ok) throw new Error("the default config is invalid");
  const gpu = resolveDeployment("Model", [{ resources: { cpu: "500m", memory: "512Mi", gpu: 1 } } as DeploymentOptions]);
  const plain = resolveDeployment("Pre", []);
  const cfg = { ...base.value, applications: [{ name: "shop", routePrefix: "/", importPath: "/app/g.ts", deployments: [gpu, plain] }] } as unknown as ResolvedServeConfig;

  it("sets a Kubernetes container's requests and limits, the GPU as an nvidia.com/gpu limit, only where stated", () => {
    const objects = Object.values(kubernetesManifests(cfg, { image: "me/g:1", configYaml: "x: 1\n", autoscaler: "serve-bin", namespace: "shop" }).files).flat() as Obj[];
    const container = (service: string) => objects.find((o) => o.kind === "Deployment" && o.metadata.labels["app.kubernetes.io/name"] === service)!.spec.template.spec.containers[0];
    expect(container(kubeDeploymentName("shop", "Model")).resources).toEqual({
      requests: { cpu: "500m", memory: "512Mi" },
      limits: { cpu: "500m", memory: "512Mi", "nvidia.com/gpu": "1" },
    });
    expect(container(kubeDeploymentName("shop", "Pre"))).not.toHaveProperty("resources");
    expect(objects.map(schemaError).filter(Boolean)).toEqual([]);
  });

  it("sets a Swarm service's deploy.resources, the GPU as a generic resource, only where stated", () => {
    const stack = swarmStack(cfg, { image: "me/g:1", configFile: "./serve.yaml" }) as { services: Record<string, Obj> };
    const deploy = (d: string) => Object.values(stack.services).find((s) => s.deploy.labels["serve-bin.deployment"] === d)!.deploy;
    expect(deploy("Model").resources).toEqual({
      limits: { cpus: "0.5", memory: "512Mi" },
      reservations: { cpus: "0.5", memory: "512Mi", generic_resources: [{ discrete_resource_spec: { kind: "NVIDIA-GPU", value: 1 } }] },
    });
    expect(deploy("Pre")).not.toHaveProperty("resources");
  });
});
