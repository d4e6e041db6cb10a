import type { LimitsConfig } from "../../config/schema.ts";

type BackoffLimits = Pick<LimitsConfig, "restartBackoffS" | "restartBackoffMaxS">;

/**
 * Seconds to wait before restarting a replica that has failed `failures`
 * times in a row: the first restart at once (a replica killed once is back in
 * a blink), then `restartBackoffS` doubling up to `restartBackoffMaxS`, as
 * Kubernetes' CrashLoopBackOff does.
 *
 * @example [1, 2, 3, 4].map((n) => restartDelayS(n, { restartBackoffS: 1, restartBackoffMaxS: 300 })) // [0, 1, 2, 4]
 */
export function restartDelayS(failures: number, limits: BackoffLimits): number {
  if (failures <= 1) return 0;
  return Math.min(limits.restartBackoffS * 2 ** (failures - 2), limits.restartBackoffMaxS);
}

/**
 * Failures in a row after one more exit: a replica that ran well for
 * `restartResetAfterS` starts counting again from one.
 */
export function failuresAfterExit(previous: number, ranForS: number | null, limits: Pick<LimitsConfig, "restartResetAfterS">): number {
  return ranForS !== null && ranForS >= limits.restartResetAfterS ? 1 : previous + 1;
}
