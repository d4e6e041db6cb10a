/**
 * `serve.run` (README "Programmatic use"): starts real replica processes from
 * inside this process, resolves to the ingress handle, serves HTTP at
 * `serve.url()`, and `serve.shutdown()` stops every replica.
 */
import { afterAll, describe, expect, it } from "vitest";
import { serve } from "../src/index.ts";
import { graph } from "./fixtures/serve-run-graph.ts";
import { gone, postJSON, replicasOf, runDirOf, waitFor } from "./harness.ts";

describe("serve.run", () => {
  afterAll(() => serve.shutdown());

  it("resolves to the ingress handle, which calls the graph; HTTP serves it too; shutdown stops every replica", async () => {
    const h = await serve.run(graph, { port: 0 });
    expect(h.deploymentName).toEqual("DAGDriver");

    const viaHandle = (await h.predict.remote(21)) as { value: number; pid: number };
    expect(viaHandle.value).toEqual(142);
    // Computed in a replica process, not here.
    expect(viaHandle.pid).not.toEqual(process.pid);
    expect(await h.options({ timeoutS: 5 }).predict.remote(1)).toEqual({ value: 102, pid: viaHandle.pid });

    const url = serve.url();
    const res = await postJSON(`${url}/calc`, 4);
    expect({ status: res.status, body: await res.json() }).toEqual({ status: 200, body: { value: 108, pid: viaHandle.pid } });

    // DAGDriver, double, Adder: one process each, children of this one. Other test files run servers in
    // this same process (vitest's worker threads), so only the replicas in this server's run directory count.
    const run = runDirOf(viaHandle.pid);
    expect(run).toMatch(new RegExp(`^serve-bin-${process.pid}-`));
    const replicas = replicasOf(process.pid).filter((p) => runDirOf(p) === run);
    expect(replicas.length).toEqual(3);
    expect(replicas).toContain(viaHandle.pid);

    await serve.shutdown();
    await waitFor(() => replicas.every(gone), "every replica to exit");
    expect(await postJSON(`${url}/calc`, 4).then((r) => r.status, () => "refused")).toEqual("refused");
    expect(() => serve.url()).toThrow(/no server is running/);
  });

  it("still refuses to be awaited by mistake through a handle made from it", async () => {
    const h = await serve.run(graph, { port: 0 });
    try {
      // Only the returned handle resolves; handles derived from it keep the loud `then`.
      await expect(Promise.resolve().then(() => h.options({}))).rejects.toThrow(/not awaitable/);
    } finally {
      await serve.shutdown();
    }
  });
});
