/**
 * The Docker image (SPEC section 7), built and run for real. No registry is
 * reached: the runtime base is made here from this machine's glibc
 * (docker/make-base.sh), the image copies the dist/serve-bin that the global
 * setup compiled (`--target prebuilt`), and every container and image made
 * here is removed by id at the end, pass or fail.
 *
 * Skipped, with the reason printed, only when docker cannot run at all (no
 * docker CLI, or no daemon answering it); .ci/run installs and starts one.
 */
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXAMPLES, ROOT, tempDir, waitFor, type TempDir } from "./harness.ts";
import { docker, dockerScope, dockerUnavailable, hostPort, inspect, logs } from "./docker-harness.ts";

const TOKEN = "docker-test-token";
const TOKEN_B = "derived-image-token";
const SUM = "sum(['(1 * (5 + 1.5))', '(2 * (5 + 1.5))'])";
const MAX = "max(['(1 * (1 + 1))', '(2 * (1 + 1))'])";

const unavailable = dockerUnavailable();
if (unavailable) {
  console.warn(
    `\n*** test/docker.test.ts SKIPPED: ${unavailable}. ` +
      "Install docker.io and start dockerd (as .ci/run does) to run the Docker image tests. ***\n",
  );
}

/**
 * `--shm-size` as the README says: sharedMemory.arenaBytes (256 MiB by default)
 * per process, the server and each replica. The tutorial is 1 + 7 processes
 * (1 + 8 after the PATCH below), the derived image's config 1 + 3.
 */
const shmFor = (processes: number) => `${processes * 256}m`;

const { runId, label, made, runContainer, removeAll } = dockerScope();

/** POST a JSON body; null when the connection fails (server not up yet). */
async function post(url: string, body: unknown, timeoutMs = 5_000): Promise<Response | null> {
  try {
    return await fetch(url, { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" }, signal: AbortSignal.timeout(timeoutMs) });
  } catch {
    return null;
  }
}

async function patch(url: string, body: unknown, token?: string): Promise<Response> {
  return fetch(url, {
    method: "PATCH",
    body: JSON.stringify(body),
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    signal: AbortSignal.timeout(30_000),
  });
}

/** Waits for the first 200 of POST `url`; the time it took from `since`. */
async function firstOk(id: string, url: string, body: unknown, since: number): Promise<{ ms: number; text: string }> {
  const res = await waitFor(
    async () => {
      if ((await inspect(id, "{{.State.Running}}")) !== "true") throw new Error(`the container exited before serving:\n${await logs(id)}`);
      const r = await post(url, body, 2_000);
      return r?.status === 200 ? r : null;
    },
    `a 200 from ${url}`,
    30_000,
    50,
  );
  return { ms: performance.now() - since, text: await res.text() };
}

describe.skipIf(unavailable !== null)("the Docker image", () => {
  let dir: TempDir;
  let image = "";
  let derived = "";
  /** Tutorial graph mounted at /app, admin API opted in with --admin-host and --admin-token. */
  let a = { id: "", url: "", admin: "" };
  /** Derived image: config and graph copied in, token from SERVE_BIN_ADMIN_TOKEN. */
  let b = { id: "", url: "", admin: "" };
  /** Tutorial graph mounted, the image's default CMD, under --init: admin API left on loopback. */
  let c = { id: "", url: "", admin: "" };
  let sizeBytes = 0;
  let firstOkMs = 0;
  let startedMs = 0;

  beforeAll(async () => {
    dir = tempDir("sb-docker-");
    // The base: this machine's glibc, imported; a fresh id, so nothing below can be a cache hit on someone else's image.
    const base = `serve-bin-test-base:${runId}`;
    const baseRun = await Bun.$`${join(ROOT, "docker/make-base.sh")} ${join(ROOT, "dist/serve-bin")} ${base}`.cwd(ROOT).quiet().nothrow();
    if (baseRun.exitCode !== 0) throw new Error(`docker/make-base.sh failed:\n${baseRun.stderr}${baseRun.stdout}`);
    made.images.push(baseRun.stdout.toString().trim());

    const tag = `serve-bin-test:${runId}`;
    const iid = join(dir.path, "image.id");
    await docker(["build", "--target", "prebuilt", "--build-arg", `BASE=${base}`, "--label", label, "--iidfile", iid, "-t", tag, "."], { timeoutMs: 120_000 });
    image = readFileSync(iid, "utf8").trim();
    made.images.push(image);
    sizeBytes = Number(await docker(["image", "inspect", "--format", "{{.Size}}", image]).then((r) => r.stdout));

    // A derived image, as the README shows: graph and config copied in, CMD naming the config.
    const ctx = join(dir.path, "derived");
    await Bun.$`mkdir -p ${ctx}`;
    copyFileSync(join(ROOT, "test/fixtures/docker-reconfig.ts"), join(ctx, "docker-reconfig.ts"));
    copyFileSync(join(ROOT, "test/fixtures/docker-serve.yaml"), join(ctx, "serve.yaml"));
    writeFileSync(
      join(ctx, "Dockerfile"),
      [`FROM ${tag}`, "COPY docker-reconfig.ts serve.yaml /app/", 'CMD ["run", "/app/serve.yaml", "--host", "0.0.0.0", "--admin-host", "0.0.0.0"]', ""].join("\n"),
    );
    const iid2 = join(dir.path, "derived.id");
    await docker(["build", "--label", label, "--iidfile", iid2, "-t", `serve-bin-test-derived:${runId}`, "."], { cwd: ctx, timeoutMs: 60_000 });
    derived = readFileSync(iid2, "utf8").trim();
    made.images.push(derived);

    // Container A alone, timed: `docker run` (create + start) to the first 200.
    const ports = ["-p", "127.0.0.1::8000", "-p", "127.0.0.1::8265"];
    const t0 = performance.now();
    a.id = await runContainer([...ports, "--shm-size", shmFor(9), "-v", `${join(EXAMPLES, "tutorial")}:/app:ro`, image, "run", "/app/graph.ts", "--host", "0.0.0.0", "--admin-host", "0.0.0.0", "--admin-token", TOKEN]);
    startedMs = performance.now() - t0;
    a.url = await hostPort(a.id, 8000);
    a.admin = await hostPort(a.id, 8265);
    const first = await firstOk(a.id, `${a.url}/my-dag`, ["5", [1, 2], "sum"], t0);
    firstOkMs = first.ms;
    expect(first.text).toEqual(SUM);

    [b.id, c.id] = await Promise.all([
      runContainer([...ports, "--shm-size", shmFor(4), "-e", `SERVE_BIN_ADMIN_TOKEN=${TOKEN_B}`, derived]),
      runContainer([...ports, "--shm-size", shmFor(8), "--init", "-v", `${join(EXAMPLES, "tutorial")}:/app:ro`, image]),
    ]);
    for (const x of [b, c]) {
      x.url = await hostPort(x.id, 8000);
      x.admin = await hostPort(x.id, 8265);
    }
    await Promise.all([firstOk(b.id, `${b.url}/greet`, "ada", 0), firstOk(c.id, `${c.url}/my-dag`, ["5", [1, 2], "sum"], 0)]);
  }, 180_000);

  afterAll(async () => {
    await removeAll();
    await dir?.[Symbol.asyncDispose]();
  }, 60_000);

  it("is a small non-root image: binary as ENTRYPOINT, port 8000 exposed, errorDetail message, HEALTHCHECK with the binary", async () => {
    const config = JSON.parse(await inspect(image, "{{json .Config}}"));
    console.log(`docker image: ${(sizeBytes / 1e6).toFixed(1)} MB (${sizeBytes} bytes; the binary alone ${(Bun.file(join(ROOT, "dist/serve-bin")).size / 1e6).toFixed(1)} MB)`);
    expect(config.User).toEqual("10001:10001");
    expect(config.Entrypoint).toEqual(["/usr/local/bin/serve-bin"]);
    expect(config.Cmd).toEqual(["run", "/app/graph.ts", "--host", "0.0.0.0"]);
    expect(Object.keys(config.ExposedPorts)).toEqual(["8000/tcp"]);
    expect(config.Env).toContain("SERVE_BIN_ERROR_DETAIL=message");
    expect(config.Healthcheck.Test).toEqual(["CMD", "/usr/local/bin/serve-bin", "healthcheck", "--port", "8000"]);
    // The binary and about 3 MB of glibc; nothing else.
    expect(sizeBytes).toBeLessThan(Bun.file(join(ROOT, "dist/serve-bin")).size + 16e6);
    // Every process in the container (server and replicas) runs as the image's user.
    const top = (await docker(["top", a.id])).stdout.split("\n").slice(1).filter(Boolean);
    expect(top.length).toBeGreaterThan(1);
    for (const line of top) expect(line.split(/\s+/)[0]).toEqual("10001");
  });

  it("serves the mounted tutorial graph with its exact outputs", async () => {
    const ready = /ready in (\d+) ms/.exec(await logs(a.id))?.[1];
    console.log(
      `docker run → first 200 on the tutorial graph: ${Math.round(firstOkMs)} ms ` +
        `(docker create + start ${Math.round(startedMs)} ms; serve-bin "ready in ${ready} ms"; the request itself ≥ 450 ms, the graph's critical path)`,
    );
    const [sum, max] = await Promise.all([post(`${a.url}/my-dag`, ["5", [1, 2], "sum"]), post(`${a.url}/my-dag`, ["1", [0, 2], "max"])]);
    expect([sum!.status, await sum!.text()]).toEqual([200, SUM]);
    expect([max!.status, await max!.text()]).toEqual([200, MAX]);
  });

  it("refuses an admin request without the token, or with a wrong one, with 401", async () => {
    const url = `${a.admin}/api/applications/default/deployments/Model`;
    const none = await patch(url, { numReplicas: 3 });
    expect(none.status).toEqual(401);
    expect((await none.json()).message).toMatch(/token/);
    expect((await patch(url, { numReplicas: 3 }, "not-the-token")).status).toEqual(401);
    expect((await fetch(`${a.admin}/api/applications`)).status).toEqual(401);
    // Nothing changed.
    const status = await (await fetch(`${a.admin}/api/applications`, { headers: { authorization: `Bearer ${TOKEN}` } })).json();
    expect(status.applications.default.deployments.Model.targetReplicas).toEqual(1);
  });

  it("takes a PATCH of numReplicas with the token through the published admin port", async () => {
    const res = await patch(`${a.admin}/api/applications/default/deployments/Model`, { numReplicas: 2 }, TOKEN);
    const body = await res.json();
    expect(res.status, JSON.stringify(body)).toEqual(200);
    expect(body.targetReplicas).toEqual(2);
    expect(body.replicas.filter((r: { state: string }) => r.state === "RUNNING")).toHaveLength(2);
    const out = await post(`${a.url}/my-dag`, ["1", [0, 2], "max"]);
    expect(await out!.text()).toEqual(MAX);
  });

  it("serves a config copied into a derived image, and takes a PATCH of userConfig that reconfigure() applies", async () => {
    expect(await (await post(`${b.url}/greet`, "ada"))!.text()).toEqual("hello, ada");
    const url = `${b.admin}/api/applications/greeter/deployments/Model`;
    expect((await patch(url, { userConfig: { greeting: "hi" } })).status).toEqual(401);
    const res = await patch(url, { userConfig: { greeting: "hi" } }, TOKEN_B);
    expect(res.status, await res.clone().text()).toEqual(200);
    expect((await res.json()).replicas).toHaveLength(2);
    // Both replicas were reconfigured: every answer is the new one.
    const answers = await Promise.all(Array.from({ length: 8 }, () => post(`${b.url}/greet`, "ada").then((r) => r!.text())));
    expect(new Set(answers)).toEqual(new Set(["hi, ada"]));
  });

  it("answers a failing request with the message only, no stack (SERVE_BIN_ERROR_DETAIL=message)", async () => {
    const res = (await post(`${b.url}/greet`, "boom"))!;
    expect(res.status).toEqual(500);
    const body = await res.json();
    expect(body.message).toMatch(/the model was asked to fail/);
    expect(JSON.stringify(body)).not.toMatch(/docker-reconfig\.ts:\d+|\bat answer\b/);
  });

  it("keeps the admin API on the container's loopback unless the operator opts in", async () => {
    // Container C publishes 8265 too, but its admin API listens on 127.0.0.1 inside: nothing answers from outside.
    const outside = await fetch(`${c.admin}/api/applications`, { signal: AbortSignal.timeout(5_000) }).then(
      (r) => `answered ${r.status}`,
      () => "no answer",
    );
    expect(outside).toEqual("no answer");
    expect(await logs(c.id)).toMatch(/admin API on http:\/\/127\.0\.0\.1:8265/);
    // Opting in without a token is refused at start, exit 2, saying what to fix.
    const id = (await docker(["create", "--label", label, "-v", `${join(EXAMPLES, "tutorial")}:/app:ro`, image, "run", "/app/graph.ts", "--host", "0.0.0.0", "--admin-host", "0.0.0.0"]))
      .stdout;
    made.containers.push(id);
    const run = await docker(["start", "--attach", id], { allowFail: true });
    expect(run.code).toEqual(2);
    expect(run.stderr + run.stdout).toMatch(/without a token.*--admin-token/);
  });

  it("reports healthy through HEALTHCHECK (serve-bin healthcheck, no curl)", async () => {
    const status = await waitFor(
      async () => {
        const s = await inspect(a.id, "{{.State.Health.Status}}");
        if (s === "unhealthy") throw new Error(`unhealthy: ${await inspect(a.id, "{{json .State.Health.Log}}")}`);
        return s === "healthy" ? s : null;
      },
      "the container to be healthy",
      45_000,
      250,
    );
    expect(status).toEqual("healthy");
    const log = JSON.parse(await inspect(a.id, "{{json .State.Health.Log}}")) as { ExitCode: number }[];
    expect(log.at(-1)!.ExitCode).toEqual(0);
  }, 60_000);

  it("drains a request in flight on docker stop and exits 0 (binary as PID 1, and under --init)", async () => {
    const inFlight = post(`${a.url}/my-dag`, ["5", [1, 2], "sum"], 15_000);
    await Bun.sleep(150); // the request is inside the graph (its critical path is 450 ms)
    const t0 = performance.now();
    await Promise.all([a.id, b.id, c.id].map((id) => docker(["stop", id], { timeoutMs: 30_000 })));
    const stopMs = performance.now() - t0;
    const res = await inFlight;
    expect(res?.status).toEqual(200);
    expect(await res!.text()).toEqual(SUM);
    for (const id of [a.id, b.id, c.id]) {
      expect([await inspect(id, "{{.State.ExitCode}}"), await inspect(id, "{{.State.OOMKilled}}")], await logs(id)).toEqual(["0", "false"]);
      expect(await logs(id)).toMatch(/draining and shutting down[\s\S]*stopped/);
    }
    console.log(`docker stop of three containers (one with a request in flight): ${Math.round(stopMs)} ms`);
    // Exit code 0 above: SIGTERM was handled inside docker stop's grace, not ended by SIGKILL (137).
  }, 60_000);
});
