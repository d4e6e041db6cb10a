/**
 * `serve-bin build --target swarm`: the stack file for `docker stack deploy`,
 * generated for the tutorial graph and read back as YAML. Where a docker CLI
 * and daemon are present, `docker stack config` also validates it against
 * the compose schema; elsewhere that one test is skipped with a loud message.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { beforeAll, describe, expect, it } from "vitest";
import { serviceName, swarmStack } from "../src/cli/swarm-stack.ts";
import { resolveDeployment } from "../src/config/diff.ts";
import { parseConfig, type DeploymentOptions, type ResolvedServeConfig } from "../src/config/schema.ts";
import { EXAMPLES, runCli, tempDir, type TempDir } from "./harness.ts";
import { dockerUnavailable } from "./docker-harness.ts";

const TUTORIAL = join(EXAMPLES, "tutorial/graph.ts");
type Obj = Record<string, any>;

const unavailable = dockerUnavailable();
if (unavailable) console.warn(`\n*** test/swarm-stack.test.ts: \`docker stack config\` validation SKIPPED: ${unavailable}. ***\n`);

describe("serve-bin build --target swarm", () => {
  let dir: TempDir;
  let stack: Obj;
  let config: Obj;
  let deployments: Obj[];

  beforeAll(async () => {
    dir = tempDir("sb-swarm-");
    const local = await runCli(["build", TUTORIAL]);
    expect(local.code).toBe(0);
    deployments = parseYaml(local.stdout).applications[0].deployments;
    const r = await runCli(["build", TUTORIAL, "--target", "swarm", "--image", "registry.example:5000/team/tutorial:1", "-o", dir.path]);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: expect.stringContaining("(8 services)") });
    stack = parseYaml(readFileSync(join(dir.path, "stack.yml"), "utf8"));
    config = parseYaml(readFileSync(join(dir.path, "serve.yaml"), "utf8"));
    return () => dir[Symbol.asyncDispose]();
  });

  it("has the controller, the proxy and one replica service per deployment, all of the image, on one overlay network with the token secret", () => {
    expect(Object.keys(stack.services)).toEqual(["controller", "proxy", "default-model", "default-model-1", "default-combiner", "default-preprocessor", "default-avgpreprocessor", "default-dagdriver"]);
    expect(stack.networks).toEqual({ "serve-bin": { driver: "overlay", attachable: true } });
    expect(stack.secrets).toEqual({ "serve-bin-cluster-token": { external: true }, "serve-bin-admin-token": { external: true } });
    expect(stack.configs).toEqual({ "serve-bin-config": { file: "./serve.yaml" } });
    for (const [name, s] of Object.entries(stack.services as Obj)) {
      expect({ name, image: s.image, networks: s.networks, token: s.secrets.includes("serve-bin-cluster-token"), env: s.environment.SERVE_BIN_CLUSTER_TOKEN_FILE }).toEqual({
        name,
        image: "registry.example:5000/team/tutorial:1",
        networks: ["serve-bin"],
        token: true,
        env: "/run/secrets/serve-bin-cluster-token",
      });
      expect(s.configs).toEqual([{ source: "serve-bin-config", target: "/etc/serve-bin/serve.yaml", mode: 0o444 }]);
      expect(s.deploy.endpoint_mode).toBe("dnsrr");
    }
  });

  it("gives each deployment's service its replica count, grace period, health check and role flags from the config", () => {
    for (const d of deployments) {
      const s = stack.services[serviceName("default", d.name)];
      expect({
        command: s.command,
        replicas: s.deploy.replicas,
        labels: s.deploy.labels,
        grace: s.stop_grace_period,
        interval: s.healthcheck.interval,
        timeout: s.healthcheck.timeout,
      }).toEqual({
        command: ["replica", "--app", "default", "--deployment", d.name, "--listen", "tcp://0.0.0.0:7000", "--controller", "tcp://controller:7070", "--health-port", "8000", "--drain-timeout-s", String(d.gracefulShutdownTimeoutS)],
        replicas: d.numReplicas,
        labels: { "serve-bin.role": "replica", "serve-bin.app": "default", "serve-bin.deployment": d.name },
        grace: `${d.gracefulShutdownTimeoutS + 2}s`,
        interval: `${d.healthCheckPeriodS}s`,
        timeout: `${d.healthCheckTimeoutS}s`,
      });
    }
    expect(stack.services["default-dagdriver"].deploy.replicas).toBe(2);
  });

  it("runs the controller on a manager with the engine's socket and a state volume, and publishes the proxy's and admin ports in host mode", () => {
    const c = stack.services.controller;
    expect(c.command).toEqual([
      "controller", "--config", "/etc/serve-bin/serve.yaml", "--app-dir", "/app", "--engine", "swarm", "--state-dir", "/var/lib/serve-bin", "--listen", "tcp://0.0.0.0:7070",
      "--port", "8000", "--admin-host", "0.0.0.0", "--admin-port", "8265", "--admin-token-file", "/run/secrets/serve-bin-admin-token",
    ]);
    expect(stack.services.proxy.command).toEqual(["proxy", "--config", "/etc/serve-bin/serve.yaml", "--controller", "tcp://controller:7070", "--host", "0.0.0.0", "--port", "8000", "--dns-fallback"]);
    expect(c.deploy.placement).toEqual({ constraints: ["node.role == manager"] });
    expect(c.deploy.replicas).toBe(1);
    expect(c.volumes).toEqual(["/var/run/docker.sock:/var/run/docker.sock", "serve-bin-state:/var/lib/serve-bin"]);
    expect(c.secrets).toEqual(["serve-bin-cluster-token", "serve-bin-admin-token"]);
    expect(c.ports).toEqual([{ target: 8265, published: 8265, protocol: "tcp", mode: "host" }]);
    const p = stack.services.proxy;
    expect(p.ports).toEqual([{ target: 8000, published: 8000, protocol: "tcp", mode: "host" }]);
    expect(p.deploy.placement).toEqual({ max_replicas_per_node: 1 });
    expect(p.stop_grace_period).toBe("10s"); // proxy.shutdownTimeoutS 8 + 2
  });

  it("writes the config the containers read: import path inside the image, admin beyond loopback, no stacks in 500s", () => {
    expect(parseConfig(config).ok).toBe(true);
    expect(config.applications[0].importPath).toBe("/app/graph.ts");
    expect(config.admin.host).toBe("0.0.0.0");
    expect(config.proxy.errorDetail).toBe("message");
  });

  it.skipIf(unavailable !== null)("passes docker stack config's schema check", () => {
    const r = spawnSync("docker", ["stack", "config", "-c", join(dir.path, "stack.yml")], { encoding: "utf8", timeout: 60_000, cwd: dir.path });
    expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 0, stderr: "" });
    expect(parseYaml(r.stdout).services["default-model"].deploy.endpoint_mode).toBe("dnsrr");
  });

  it("refuses a missing or malformed --image, an unknown target, a missing -o and a graph outside --app-dir, each with exit 2", async () => {
    const cases: [string[], string][] = [
      [["--target", "swarm", "-o", "x"], "--target swarm needs --image"],
      [["--target", "swarm", "--image", "Bad Image", "-o", "x"], '--image "Bad Image" is not an image reference'],
      [["--target", "nomad", "--image", "a/b:1", "-o", "x"], "--target nomad is not known; the targets are: swarm, kubernetes"],
      [["--target", "swarm", "--image", "a/b:1"], "needs -o DIR"],
      [["--target", "swarm", "--image", "a/b:1", "-o", "x", "--app-root", "app"], "--app-root takes an absolute path"],
      [["--target", "swarm", "--image", "a/b:1", "-o", "x", "--app-dir", join(EXAMPLES, "diamond")], "is outside the app directory"],
    ];
    for (const [args, message] of cases) {
      const r = await runCli(["build", TUTORIAL, ...args], { cwd: dir.path });
      expect({ args, code: r.code, stderr: r.stderr }).toEqual({ args, code: 2, stderr: expect.stringContaining(message) });
    }
  });
});

describe("swarmStack", () => {
  it("takes grace periods and the initial count of an autoscaled deployment from the config, and keeps service names distinct", () => {
    const base = parseConfig({});
    if (!base.ok) throw new Error("the default config is invalid");
    const deployments = [
      resolveDeployment("Model_1", [{ gracefulShutdownTimeoutS: 7, numReplicas: "auto", autoscalingConfig: { minReplicas: 3, maxReplicas: 9 } } as DeploymentOptions]),
      resolveDeployment("model.1", [{ gracefulShutdownTimeoutS: 0 }]),
    ];
    const cfg = { ...base.value, applications: [{ name: "Shop", routePrefix: "/", importPath: "/app/g.ts", deployments }] } as unknown as ResolvedServeConfig;
    const s = swarmStack(cfg, { image: "me/g:1", configFile: "./serve.yaml" }).services as Obj;
    expect(Object.keys(s)).toEqual(["controller", "proxy", "shop-model-1", "shop-model-1-2"]);
    expect([s["shop-model-1"].stop_grace_period, s["shop-model-1"].deploy.replicas]).toEqual(["9s", 3]);
    expect([s["shop-model-1-2"].stop_grace_period, s["shop-model-1-2"].deploy.replicas]).toEqual(["2s", 1]);
    expect(s["shop-model-1-2"].deploy.labels["serve-bin.deployment"]).toBe("model.1");
  });
});
