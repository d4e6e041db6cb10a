/**
 * A code upgrade on Kubernetes moves traffic in steps through the weighted
 * split, and a rollback moves it back: a real `serve-bin controller --engine
 * kubernetes`, a real proxy role, and real replica processes the test
 * kubelet (test/kube-kubelet.ts) starts for the API server stand-in
 * (test/kube-api-standin.ts) — no real API server runs on these machines, so
 * Kubernetes' side (Deployments, ReplicaSets, probes) is the stand-in's.
 *
 * Two versions of one graph (v1 answers "v1", v2 "v2") play the old and the
 * new image: the controller runs v2's config, the build's revisions.json and
 * plans.json (written here as `build` writes them) name the previous
 * revisions and v1's planned graph, and the previous revisions' pods load v1.
 */
import { afterEach, describe, expect, it } from "vitest";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { kubeDeploymentName, replicaSelector, type StoredPlans } from "../src/cluster/kubernetes/names.ts";
import { planApp } from "../src/runtime/plan-app.ts";
import { BUN, CLI, postJSON, tempDir, waitFor, type TempDir } from "./harness.ts";
import type { KubeApiStandIn } from "./kube-api-standin.ts";
import { TestKubelet } from "./kube-kubelet.ts";
import { kubeController } from "./kube-roles.ts";
import { endRoles, startRole, type Role } from "./role-process.ts";

const SECRET = "kubernetes-rollout-traffic-secret-0123456789";
/** Each deployment's replicas in both versions: at most TARGET + 1 pods of one deployment at once. */
const TARGET = 3;
const graph = (version: string) => `import { DAGDriver, deployment, InputNode, jsonRequest } from "serve-bin";
export const Model = deployment(class Model { predict(_req: unknown) { return "${version}"; } });
const input = new InputNode();
export default DAGDriver.bind(Model.bind().predict.bind(input), { httpAdapter: jsonRequest });
`;
const DEPLOYMENTS = ["Model", "DAGDriver"];
const service = (d: string) => kubeDeploymentName("default", d);
const OLD = (d: string) => `${service(d)}-r0000dead`;
const NEW = (d: string) => `${service(d)}-r0000beef`;

interface Rollout {
  direction: string;
  state: string;
  weights: { current: number; previous: number };
}

describe("a code upgrade moves traffic in steps, and back (API server stand-in, real role processes)", () => {
  const roles: Role[] = [];
  let dir: TempDir;
  let api: KubeApiStandIn;
  let kubelet: TestKubelet;

  afterEach(async () => {
    if (process.env.SB_DEBUG) {
      for (const r of roles) console.log(`==== ${r.name}\n${r.out}`);
      for (const p of kubelet?.pods ?? []) {
        // What the pod's readiness says now (waiting for a start, constructing, draining): which side a stuck claim is on.
        const ready = await fetch(`http://127.0.0.1:${p.healthPort}/-/ready`).then((r) => r.text(), (e) => String(e));
        console.log(`==== pod ${p.name} (link ${p.linkPort}, ready: ${ready})\n${p.out}`);
      }
      for (const p of kubelet?.gone ?? []) console.log(`==== gone pod ${p.name} (link ${p.linkPort})\n${p.out}`);
      console.log(`==== kubelet\n${kubelet?.events.join("\n")}`);
    }
    await endRoles(roles.splice(0));
    await kubelet?.[Symbol.asyncDispose]();
    await api?.[Symbol.asyncDispose]();
    await dir?.[Symbol.asyncDispose]();
  });

  it.each([{ rollback: false }, { rollback: true }])("rollback mid-way: $rollback — weights follow the ready pods, answers follow the weights, never more than target + 1 pods, no failed request", async ({ rollback }) => {
    dir = tempDir("sb-kube-weights-");
    for (const v of ["v1", "v2"]) {
      mkdirSync(join(dir.path, v));
      writeFileSync(join(dir.path, v, "graph.ts"), graph(v));
    }
    const [v1, v2] = await Promise.all(["v1", "v2"].map((v) => planApp({ name: "default", importPath: "./graph.ts", deployments: [] }, join(dir.path, v), dir.path)));
    // As the ConfigMap is mounted in the controller's pod: serve.yaml (v2's), revisions.json and plans.json.
    const config = join(dir.path, "config");
    mkdirSync(config);
    writeFileSync(
      join(config, "serve.yaml"),
      `applications:\n  - name: default\n    importPath: ../v2/graph.ts\n    deployments:\n${DEPLOYMENTS.map((d) => `      - { name: ${d}, numReplicas: ${TARGET} }\n`).join("")}`,
    );
    const revisions = Object.fromEntries(DEPLOYMENTS.map((d) => [service(d), { current: NEW(d), previous: [OLD(d)], code: { [NEW(d)]: v2!.codeVersion, [OLD(d)]: v1!.codeVersion } }]));
    writeFileSync(join(config, "revisions.json"), JSON.stringify(revisions));
    const plans: StoredPlans = Object.fromEntries([v1!, v2!].map((p) => [p.codeVersion, { modulePath: p.modulePath, exportName: p.exportName, fileHash: p.fileHash, graph: p.graph }]));
    writeFileSync(join(config, "plans.json"), JSON.stringify(plans));

    const started = await kubeController({ roles, secret: SECRET, dir: dir.path, config: join(config, "serve.yaml"), hostname: "controller-w" });
    api = started.api;
    const { controller, control, admin } = started;
    const start = (name: string, args: string[], env: Record<string, string> = {}) => startRole(roles, SECRET, name, args, env);
    const deploymentOf = (name: string) => DEPLOYMENTS.find((d) => name.startsWith(service(d)))!;
    kubelet = new TestKubelet(
      api,
      (name, link, health) => [BUN, CLI, "replica", "--app", "default", "--deployment", deploymentOf(name), "--listen", `tcp://127.0.0.1:${link}`, "--controller", control, "--health-host", "127.0.0.1", "--health-port", String(health), "--drain-timeout-s", "5"],
      (name) => ({ SERVE_BIN_CLUSTER_TOKEN: SECRET, SERVE_BIN_CLUSTER_TOKEN_FILE: "", SERVE_BIN_REVISION: /-(r[0-9a-f]{8})$/.exec(name)![1]! }),
    );
    // What `kubectl apply` of the new build leaves: the previous revisions still at TARGET, the new ones created at Kubernetes' default of 1.
    for (const d of DEPLOYMENTS) {
      api.addDeployment(OLD(d), { ...replicaSelector(service(d)), "serve-bin.dev/revision": "r0000dead" }, TARGET);
      api.addDeployment(NEW(d), { ...replicaSelector(service(d)), "serve-bin.dev/revision": "r0000beef" }, 1);
    }
    const most = new Map(DEPLOYMENTS.map((d) => [d, 0]));
    const pods = setInterval(() => {
      for (const d of DEPLOYMENTS) {
        const n = kubelet.of(OLD(d)).length + kubelet.of(NEW(d)).length;
        if (process.env.SB_DEBUG && n > most.get(d)!) console.log(`${d} ${n} pods: ${kubelet.events.slice(-6).join(", ")}; scales ${api.calls.filter((c) => c.method === "PATCH" && c.url.endsWith("/scale")).slice(-4).map((c) => `${c.url.split("/").at(-2)!.slice(-9)} → ${c.body!.spec.replicas}`).join(", ")}`);
        most.set(d, Math.max(most.get(d)!, n));
      }
    }, 5);

    // The controller's rollout, sampled: what the weights were at each moment.
    const seen: { at: number; asked: number; rollout: Rollout | null }[] = [];
    const rolloutNow = async () => ((await (await fetch(`${admin}/api/applications`)).json()) as any).applications.default?.rollout as Rollout | undefined;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        // `asked`: the controller answered after this, so its rollout held at least from then until `at`.
        const asked = performance.now();
        seen.push({ asked, rollout: (await rolloutNow().catch(() => undefined)) ?? null, at: performance.now() });
        await Bun.sleep(20);
      }
    })();

    const proxy = start("proxy", ["proxy", "--controller", control, "--host", "127.0.0.1", "--port", "0"]);
    const url = (await proxy.line(/proxy listening on (http:\/\/\S+)/, "its address"))[1]!;
    await waitFor(async () => (await fetch(`${url}/-/ready`)).status === 200, "the proxy to be ready", 60_000);
    let stop = false;
    const answers: { sent: number; done: number; body: string; variant: string | null }[] = [];
    const failed: string[] = [];
    const load = Promise.all(
      Array.from({ length: 4 }, async () => {
        while (!stop) {
          const sent = performance.now();
          const res = await postJSON(url, {}).catch((e) => e as Error);
          const body = res instanceof Response ? await res.text() : String(res);
          if (res instanceof Response && res.status === 200 && (body === '"v1"' || body === '"v2"' || body === "v1" || body === "v2")) answers.push({ sent, done: performance.now(), body: body.replace(/"/g, ""), variant: res.headers.get("x-serve-variant") });
          else failed.push(`${res instanceof Response ? res.status : "error"} ${body}`);
        }
      }),
    );
    /** The share of the route the new code has: the split's weights need not add up to 100 (each side gets its thinnest deployment's share). */
    const share = (r: Rollout | null | undefined) => (r ? Math.round((100 * r.weights.current) / Math.max(1, r.weights.current + r.weights.previous)) : undefined);
    const weightNow = () => share(seen.at(-1)?.rollout);
    if (rollback) {
      await waitFor(() => (weightNow() ?? 0) >= 50, "half the traffic on the new code", 120_000);
      const res = await fetch(`${admin}/api/applications/default/rollback`, { method: "POST", headers: { "content-type": "application/json" } });
      expect(res.status).toBe(202);
      await waitFor(() => seen.at(-1)?.rollout?.state === "rolled back", "the rollback to settle", 120_000);
      // The proxy routes by the controller's snapshot: wait until it carries the split as moved back.
      await waitFor(async () => JSON.stringify(await (await fetch(`${url}/-/routes`)).json()) === JSON.stringify({ "/": { split: { default: 0, "default~previous": 100 } } }), "the proxy's route moved back");
    } else {
      await controller.line(/default: rollout done/, "the rollout to finish", 120_000);
      await waitFor(async () => JSON.stringify(await (await fetch(`${url}/-/routes`)).json()) === JSON.stringify({ "/": "default" }), "the proxy's route on the new code alone");
    }
    const settledAt = performance.now();
    await waitFor(() => answers.filter((a) => a.sent > settledAt).length >= 40, "traffic after the rollout settled");
    stop = true;
    await load;
    sampling = false;
    await sampler;
    clearInterval(pods);

    const weights = seen.flatMap((s) => (s.rollout ? [share(s.rollout)!] : []));
    // Every weight the controller set, from its log (a loaded machine's sampler can miss a 500 ms step).
    const set = [...controller.out.matchAll(/default: (\d+)% of \/ to the current code, (\d+)% to default~previous/g)].map((m) => share({ weights: { current: Number(m[1]), previous: Number(m[2]) } } as Rollout)!);
    const mids = [...new Set(set.filter((w) => w > 0 && w < 100))];
    const v2share = (from: number, to: number) => {
      const a = answers.filter((x) => x.sent >= from && x.done <= to);
      return { n: a.length, share: a.filter((x) => x.body === "v2").length / Math.max(1, a.length) };
    };
    // Each weight held long enough to measure: answers sent after the proxy can have it (one snapshot period, 250 ms) and before it changed.
    const phases: { weight: number; n: number; share: number }[] = [];
    for (let i = 0; i < seen.length; ) {
      const w = share(seen[i]!.rollout);
      let j = i;
      while (j + 1 < seen.length && share(seen[j + 1]!.rollout) === w) j++;
      if (w !== undefined && j > i) phases.push({ weight: w, ...v2share(seen[i]!.at + 300, seen[j]!.asked) });
      i = j + 1;
    }
    const measured = phases.filter((p) => p.n >= 40);
    if (failed.length) console.log(`failed: ${failed.join("\n")}`);
    console.log(
      `weighted rollout (${rollback ? "rolled back mid-way" : "to the end"}): ${answers.length} ok, ${failed.length} failed; weights set ${JSON.stringify(set)}, seen ${JSON.stringify([...new Set(weights)])}; most pods per deployment ${JSON.stringify(Object.fromEntries(most))}; phases ${JSON.stringify(phases.map((p) => ({ ...p, share: Math.round(p.share * 100) })))}`,
    );
    expect(failed).toEqual([]);
    for (const d of DEPLOYMENTS) expect(most.get(d)).toBeLessThanOrEqual(TARGET + 1);
    // Each drained replica's pod was marked to go first before its Deployment's count went down (the ReplicaSet's pod-deletion-cost).
    const marks = api.calls.filter((c) => c.method === "PATCH" && c.url.includes("/pods/"));
    expect(marks.length).toBeGreaterThan(0);
    expect(marks.every((c) => c.contentType === "application/merge-patch+json" && Number(c.body!.metadata.annotations["controller.kubernetes.io/pod-deletion-cost"]) < 0)).toBe(true);
    // Steps, not a switch: at least two weights strictly between 0 and 100.
    expect(mids.length).toBeGreaterThanOrEqual(2);
    // Before the first step every answer is the old code's; while a weight holds, the share of new answers follows it.
    // The first step came after the controller's last answer without it, which came after that sample was asked for.
    const firstStep = seen.findIndex((s) => (share(s.rollout) ?? 0) > 0);
    const noStepYet = firstStep > 0 ? seen[firstStep - 1]!.asked : 0;
    // (On a loaded machine the first new pod can be ready before the proxy answered anything: then there is no "before" to check.)
    const before = answers.filter((a) => a.done < noStepYet);
    expect(before.every((a) => a.body === "v1" && a.variant === "default~previous")).toBe(true);
    expect(measured.length).toBeGreaterThanOrEqual(1);
    for (const p of measured) expect(Math.abs(p.share * 100 - p.weight)).toBeLessThanOrEqual(25);
    // Every answer names the side it came from.
    expect(answers.every((a) => a.variant === null || (a.variant === "default") === (a.body === "v2"))).toBe(true);
    const after = answers.filter((a) => a.sent > settledAt);
    if (rollback) {
      // Back where it came from: every answer the old code's, the new revision down to one idle pod, the old one at its count.
      expect(after.every((a) => a.body === "v1")).toBe(true);
      expect(weights.at(-1)).toBe(0);
      for (const d of DEPLOYMENTS) {
        expect(kubelet.of(OLD(d)).length).toBe(TARGET);
        expect(kubelet.of(NEW(d)).length).toBe(1);
      }
    } else {
      expect(after.every((a) => a.body === "v2" && a.variant === null)).toBe(true);
      for (const d of DEPLOYMENTS) {
        expect(kubelet.of(OLD(d)).length).toBe(0);
        expect(kubelet.of(NEW(d)).length).toBe(TARGET);
      }
      // The variant is gone from the status, and never reached the ConfigMap.
      const status = ((await (await fetch(`${admin}/api/applications`)).json()) as any).applications;
      expect(Object.keys(status)).toEqual(["default"]);
      expect(api.configMaps.get("serve-bin-config")!.data["serve.yaml"]).not.toContain("~previous");
      // Nothing is moving now: a rollback is refused, saying how to go back; an unknown application is not found.
      const rollbackOf = async (app: string) => {
        const res = await fetch(`${admin}/api/applications/${app}/rollback`, { method: "POST", headers: { "content-type": "application/json" } });
        return { status: res.status, body: (await res.json()) as { error: string; message: string } };
      };
      expect(await rollbackOf("default")).toEqual({ status: 409, body: expect.objectContaining({ error: "conflict", message: expect.stringContaining("no rollout in progress to move back (it runs on its current revision alone); to go back now, apply the previous build") }) });
      expect(await rollbackOf("nope")).toEqual({ status: 404, body: expect.objectContaining({ error: "not_found", message: expect.stringContaining('no application "nope"') }) });
    }
  }, 240_000);
});
