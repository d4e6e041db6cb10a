/**
 * An application with its own node_modules (an exports-map package and
 * onnxruntime-node's native addon) copied into an image built FROM the
 * serve-bin image, as docs/docker.md shows, and served with real inference.
 * No registry is reached: the base is this machine's glibc plus the system
 * libraries the addon links (docker/make-base.sh with the addon named).
 * Skipped, loudly, when no Docker engine answers or onnxruntime-node cannot
 * be installed.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ORT_VERSION, checkServes, onnxruntimeCache, writeApp } from "./app-deps.ts";
import { docker, dockerScope, dockerUnavailable, hostPort, inspect, logs } from "./docker-harness.ts";
import { ROOT, tempDir, waitFor } from "./harness.ts";

const unavailable = dockerUnavailable();
const ort = unavailable ? { skip: "" } : onnxruntimeCache();
const why = unavailable ?? ("skip" in ort ? ort.skip : null);
if (why) console.warn(`\n*** test/docker-deps.test.ts SKIPPED: ${why} ***\n`);

const scope = dockerScope();

describe.skipIf(why !== null)("an image built FROM serve-bin with the app's node_modules copied in", () => {
  afterAll(() => scope.removeAll(), 60_000);

  it("loads the app's packages and onnxruntime-node's addon in every replica and answers real inference", async () => {
    await using dir = tempDir("sb-docker-deps-");
    const modules = (ort as { modules: string }).modules;
    const addon = join(modules, "onnxruntime-node/bin/napi-v6/linux/x64/onnxruntime_binding.node");

    const base = `serve-bin-test-base:${scope.runId}`;
    const made = await Bun.$`${join(ROOT, "docker/make-base.sh")} ${join(ROOT, "dist/serve-bin")} ${base} ${addon}`.cwd(ROOT).quiet().nothrow();
    if (made.exitCode !== 0) throw new Error(`docker/make-base.sh failed:\n${made.stderr}${made.stdout}`);
    scope.made.images.push(made.stdout.toString().trim());

    const tag = `serve-bin-test:${scope.runId}`;
    const iid = join(dir.path, "image.id");
    await docker(["build", "--target", "prebuilt", "--build-arg", `BASE=${base}`, "--label", scope.label, "--iidfile", iid, "-t", tag, "."], { timeoutMs: 120_000 });
    scope.made.images.push(readFileSync(iid, "utf8").trim());

    // The app directory, node_modules installed, and the two-line Dockerfile of docs/docker.md.
    const app = join(dir.path, "app");
    await Bun.$`mkdir -p ${app}`;
    writeApp(app, modules);
    writeFileSync(join(app, "Dockerfile"), `FROM ${tag}\nCOPY . /app/\n`);
    const iid2 = join(dir.path, "app.id");
    await docker(["build", "--label", scope.label, "--iidfile", iid2, "-t", `serve-bin-test-app:${scope.runId}`, "."], { cwd: app, timeoutMs: 180_000 });
    scope.made.images.push(readFileSync(iid2, "utf8").trim());

    // Server, DAGDriver, preprocess and two Scale replicas: 5 arenas.
    const id = await scope.runContainer(["-p", "127.0.0.1::8000", "--shm-size", `${5 * 256}m`, readFileSync(iid2, "utf8").trim()]);
    const url = await hostPort(id, 8000);
    await waitFor(
      async () => {
        if ((await inspect(id, "{{.State.Running}}")) !== "true") throw new Error(`the container exited before serving:\n${await logs(id)}`);
        return /ready in \d+ ms/.test(await logs(id));
      },
      "the container to be ready",
      60_000,
      200,
    );
    await checkServes(url);
    expect(await logs(id)).not.toMatch(/Cannot find (package|module)/);
    console.log(`app image with onnxruntime-node@${ORT_VERSION}: served from ${url}`);
  }, 300_000);
});
