import type { AutoscalingConfig } from "../config/schema.ts";

/** What the autoscaler remembers between ticks. */
export interface AutoscaleState {
  /** The replica count it decided, or null before its first decision. */
  desired: number | null;
  /** Since when the load has asked for a different count (0: it has not). */
  since: number;
  /** Whether that ask is for more replicas: an ask that turns around starts its own delay. */
  up?: boolean;
}

/**
 * Replicas wanted for the load the replicas report: total ongoing requests
 * over `targetOngoingRequests`, within [min, max], applied only once the
 * load has asked for it for `upscaleDelayS` (or `downscaleDelayS`).
 * Returns the new count, or null to keep the current one.
 */
export function decideReplicas(
  cfg: AutoscalingConfig,
  replicas: readonly { ongoing: number }[],
  current: number,
  state: AutoscaleState,
  now: number,
): number | null {
  const total = replicas.reduce((a, r) => a + r.ongoing, 0);
  const wanted = Math.min(cfg.maxReplicas, Math.max(cfg.minReplicas, Math.ceil(total / cfg.targetOngoingRequests)));
  if (wanted === current) {
    state.since = 0;
    return state.desired === null ? current : null;
  }
  const up = wanted > current;
  if (state.since === 0 || state.up !== up) {
    state.since = now;
    state.up = up;
  }
  const delayS = up ? cfg.upscaleDelayS : cfg.downscaleDelayS;
  if (now - state.since < delayS * 1000) return null;
  state.since = 0;
  return wanted;
}
