import { OUTLIER_DEFAULTS, type OutlierDetection } from "../config/schema.ts";
import { ServeError } from "../error.ts";

/** What one caller knows of one replica's recent failures; kept on its ReplicaClient. */
export interface OutlierState {
  /** Id of the replica, for messages. */
  readonly info: { id: string };
  /** Timeouts or 503s in a row. */
  failures: number;
  ejected: boolean;
  /** Ejections in a row: each one lasts this many times the base. Decays while the replica behaves. */
  ejections: number;
  /** When its last ejection ended (ms since the epoch). */
  returnedAt: number;
}

/** Counts of one process, by deployment: for /metrics. */
const stats = new Map<string, { ejections: number; ejected: number }>();

/**
 * Outlier ejections made by this process's callers, by deployment: `ejections`
 * counts every one since start, `ejected` is how many replicas are ejected now.
 *
 * @example outlierStats() // { Model: { ejections: 2, ejected: 1 } }
 */
export function outlierStats(): Record<string, { ejections: number; ejected: number }> {
  return Object.fromEntries([...stats].map(([k, v]) => [k, { ...v }]));
}

/**
 * A failure that says something about the replica of `deployment` that had
 * the call: it timed out, died, or answered 503 itself. Errors it passes on
 * from a deeper hop name their own deployment and do not count; a deadline of
 * this hop (`abortedHere`) may name none.
 */
export function countsAgainstReplica(e: unknown, deployment: string, abortedHere: boolean): boolean {
  if (!(e instanceof ServeError) || (e.code !== "timeout" && e.code !== "unavailable")) return false;
  return e.deployment === deployment || (abortedHere && e.deployment === undefined);
}

/**
 * Outlier detection for one deployment as one caller sees it, after Envoy's:
 * `consecutiveFailures` timeouts or 503s in a row eject a replica for
 * `baseEjectionS` × (ejections in a row), at most `maxEjectionS`; at most
 * `maxEjectionPercent` of the replicas (but at least one) are ejected at once,
 * and never the last one. An ejected replica comes back by itself.
 */
export class OutlierDetector {
  policy: OutlierDetection = OUTLIER_DEFAULTS;
  /** Replicas this detector has ejected now: while 0, a pick need not look. */
  ejectedNow = 0;

  constructor(
    readonly deployment: string,
    /** Called when a replica comes back: queued calls may use it. */
    readonly onReturn: () => void,
  ) {}

  succeeded(r: OutlierState): void {
    r.failures = 0;
  }

  /**
   * Counts a failure of `r`; `replicas` is the deployment's current set, for the ejection cap.
   * Returns the seconds `r` is now ejected for, or 0.
   */
  failed(r: OutlierState, replicas: readonly OutlierState[], now = Date.now()): number {
    const p = this.policy;
    if (p.consecutiveFailures === 0 || r.ejected || ++r.failures < p.consecutiveFailures) return 0;
    const ejectedNow = replicas.filter((x) => x.ejected).length;
    const cap = Math.min(replicas.length - 1, p.maxEjectionPercent === 0 ? 0 : Math.max(1, Math.floor((replicas.length * p.maxEjectionPercent) / 100)));
    if (ejectedNow >= cap) return 0; // still counted: it is ejected as soon as there is room
    // The multiplier falls by one for each base period the replica behaved since it came back.
    const calm = r.returnedAt ? Math.floor((now - r.returnedAt) / (p.baseEjectionS * 1000)) : 0;
    r.ejections = Math.max(0, r.ejections - calm) + 1;
    const seconds = Math.min(p.baseEjectionS * r.ejections, p.maxEjectionS);
    r.ejected = true;
    this.ejectedNow++;
    const s = stats.get(this.deployment) ?? { ejections: 0, ejected: 0 };
    s.ejections++;
    s.ejected++;
    stats.set(this.deployment, s);
    const id = r.info.id.split("@")[0];
    console.warn(
      `serve-bin: ejected replica ${id} of ${this.deployment} for ${seconds} s after ${r.failures} timeouts or 503s in a row (outlierDetection; ejection ${r.ejections} in a row)`,
    );
    setTimeout(() => {
      r.ejected = false;
      r.failures = 0;
      r.returnedAt = Date.now();
      this.ejectedNow--;
      s.ejected--;
      console.warn(`serve-bin: replica ${id} of ${this.deployment} is back after its ejection`);
      this.onReturn();
    }, seconds * 1000).unref();
    return seconds;
  }
}
