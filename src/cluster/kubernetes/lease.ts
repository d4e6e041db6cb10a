/**
 * One controller at a time: the controller Deployment is `Recreate` with one
 * replica, but a node that drops off the network can leave an old controller
 * running while Kubernetes starts a new one. Both then race for the Lease
 * object the manifests create; only the holder scales and writes the
 * ConfigMap. The holder renews well within `durationS`; another candidate
 * takes the Lease only once a renewal is overdue. Writes carry the
 * resourceVersion read, so of two candidates that read the same Lease, the
 * API server lets exactly one write it (the other gets 409).
 */
import type { Lease } from "kubernetes-types/coordination/v1";
import { KubeApiError, type KubeClient } from "./client.ts";

/** A Kubernetes MicroTime: RFC 3339 with microseconds. */
const microTime = (ms: number) => new Date(ms).toISOString().replace("Z", "000Z");

export interface LeaseOptions {
  client: KubeClient;
  /** The Lease's name (`serve-bin-controller`). */
  name: string;
  /** Who this candidate is: the pod's name. */
  identity: string;
  /** How long a holder keeps the Lease without renewing. Default 15 s. */
  durationS?: number;
  /** The clock, in ms (a test's own). */
  now?: () => number;
}

/**
 * @example if (await lease.tryLead()) engine.scale("default", "Model", 3); // call every durationS / 3
 */
export class ControllerLease {
  readonly #o: Required<LeaseOptions>;

  constructor(opts: LeaseOptions) {
    this.#o = { durationS: 15, now: Date.now, ...opts };
  }

  /** Takes or renews the Lease; true when this candidate holds it now. */
  async tryLead(): Promise<boolean> {
    const { client, name, identity, durationS, now } = this.#o;
    const lease = await client.getLease(name);
    const spec = lease.spec ?? {};
    const t = now();
    const renewed = spec.renewTime ? Date.parse(spec.renewTime) : 0;
    const heldByOther = spec.holderIdentity && spec.holderIdentity !== identity && renewed + (spec.leaseDurationSeconds ?? durationS) * 1000 > t;
    if (heldByOther) return false;
    const taking = spec.holderIdentity !== identity;
    const next: Lease = {
      ...lease,
      spec: {
        ...spec,
        holderIdentity: identity,
        leaseDurationSeconds: durationS,
        renewTime: microTime(t),
        ...(taking ? { acquireTime: microTime(t), leaseTransitions: (spec.leaseTransitions ?? 0) + (spec.holderIdentity ? 1 : 0) } : {}),
      },
    };
    try {
      await client.updateLease(next);
      return true;
    } catch (e) {
      if (e instanceof KubeApiError && e.status === 409) return false; // another candidate wrote first
      throw e;
    }
  }
}
