/**
 * The controller's Lease (src/cluster/kubernetes/lease.ts) against the API
 * server stand-in (test/kube-api-standin.ts; no real API server can run on
 * these machines): one holder at a time, renewals, takeover after expiry, and
 * two candidates racing on the same read, where the API server's 409 decides.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { KubeClient } from "../src/cluster/kubernetes/client.ts";
import { ControllerLease } from "../src/cluster/kubernetes/lease.ts";
import { KubeApiStandIn } from "./kube-api-standin.ts";

const LEASE = "/apis/coordination.k8s.io/v1/namespaces/serving/leases/serve-bin-controller";
let api: KubeApiStandIn;
let clock = 0;
const candidate = (identity: string) =>
  new ControllerLease({ client: new KubeClient({ server: api.url, namespace: api.namespace, token: api.token }), name: "serve-bin-controller", identity, durationS: 15, now: () => clock });

beforeEach(() => {
  clock = Date.parse("2026-11-29T21:00:00Z");
  api = new KubeApiStandIn();
  api.putLease("serve-bin-controller");
});
afterEach(() => api[Symbol.asyncDispose]());

describe("ControllerLease", () => {
  it("takes the empty Lease with a GET and a PUT carrying the resourceVersion read, and keeps others out while it renews", async () => {
    const [a, b] = [candidate("controller-a"), candidate("controller-b")];
    const rv = api.leases.get("serve-bin-controller")!.metadata.resourceVersion;
    expect(await a.tryLead()).toBe(true);
    expect(api.calls.map((c) => [c.method, c.url, c.body?.metadata?.resourceVersion])).toEqual([
      ["GET", LEASE, undefined],
      ["PUT", LEASE, rv],
    ]);
    expect(api.leases.get("serve-bin-controller")!.spec).toEqual({
      holderIdentity: "controller-a",
      leaseDurationSeconds: 15,
      acquireTime: "2026-11-29T21:00:00.000000Z",
      renewTime: "2026-11-29T21:00:00.000000Z",
      leaseTransitions: 0,
    });
    clock += 10_000;
    expect(await b.tryLead()).toBe(false);
    expect(await a.tryLead()).toBe(true);
    clock += 10_000; // 20 s after the take, 10 s after the renewal
    expect(await b.tryLead()).toBe(false);
    expect(api.leases.get("serve-bin-controller")!.spec.renewTime).toBe("2026-11-29T21:00:10.000000Z");
  });

  it("lets another candidate take over once the holder's renewal is overdue, counting the transition", async () => {
    const [a, b] = [candidate("controller-a"), candidate("controller-b")];
    expect(await a.tryLead()).toBe(true);
    clock += 15_001;
    expect(await b.tryLead()).toBe(true);
    expect(api.leases.get("serve-bin-controller")!.spec).toMatchObject({ holderIdentity: "controller-b", leaseTransitions: 1 });
    expect(await a.tryLead()).toBe(false);
  });

  it("loses cleanly when another candidate wrote the Lease between its read and its write: the API server's 409 decides", async () => {
    const a = candidate("controller-a");
    // controller-b's write lands right after a's read, so a writes with a stale resourceVersion.
    api.afterGet(LEASE, () => api.putLease("serve-bin-controller", { holderIdentity: "controller-b", leaseDurationSeconds: 15, renewTime: new Date(clock).toISOString() }));
    expect(await a.tryLead()).toBe(false);
    expect(api.takeCalls()).toEqual([`GET ${LEASE}`, `PUT ${LEASE}`]);
    expect(api.leases.get("serve-bin-controller")!.spec.holderIdentity).toBe("controller-b");
    expect(await a.tryLead()).toBe(false); // and stays out while b's renewal is fresh
  });
});
