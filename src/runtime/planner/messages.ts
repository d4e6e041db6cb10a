import type { Issue, ServeErrorCode } from "../../error.ts";
import type { GraphPlan } from "./graph-plan.ts";

/** What the server asks a planning process: the one module to import. */
export interface PlanRequest {
  t: "plan";
  modulePath: string;
  exportName: string;
  /** The file's content hash, checked by the replicas later. */
  fileHash: string;
  /** limits.planTimeoutS: the server kills the process then; the process ends itself a little later if the server cannot. */
  timeoutS: number;
}

/** Why planning failed, as data (a ServeError's fields, with the user's stack). */
export interface PlanFailure {
  code: ServeErrorCode;
  message: string;
  deployment?: string;
  issues?: Issue[];
  causeName?: string;
  causeStack?: string;
}

/** The planning process's one answer. */
export type PlanReply = { t: "planned"; graph: GraphPlan } | { t: "failed"; error: PlanFailure };
