/** Prometheus text format helpers (kept with the metrics, in runtime, so the MetricsStore can write it too). */
export { family, labels } from "../runtime/metrics/text-format.ts";
