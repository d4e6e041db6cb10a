import { ServeError } from "../../error.ts";
import { loadGraph } from "../load-graph.ts";
import { graphPlanOf } from "./graph-plan.ts";
import type { PlanFailure, PlanReply, PlanRequest } from "./messages.ts";

/** A failure as data: a ServeError's fields, anything else as a build error with its stack. */
function failure(e: unknown, modulePath: string): PlanFailure {
  if (e instanceof ServeError) {
    return { code: e.code, message: e.message, deployment: e.deployment, issues: e.issues, causeName: e.causeName, causeStack: e.causeStack };
  }
  const err = e instanceof Error ? e : new Error(String(e));
  return { code: "build", message: `cannot plan ${modulePath}: ${err.message}`, causeName: err.name, causeStack: err.stack };
}

/** Seconds past the server's own deadline before the process ends itself: the server's kill (and clear error) comes first. */
const SELF_KILL_GRACE_S = 5;

/**
 * Ends this process from a worker thread (which runs while the module's
 * top-level code holds the main thread) when the server is gone or the
 * deadline has passed: a server killed with SIGKILL cannot reap its planner,
 * so the planner does not outlive it.
 */
function startWatchdog(timeoutS: number): void {
  const code = `const server = ${process.ppid};
const end = () => process.kill(process.pid, "SIGKILL");
setInterval(() => { try { process.kill(server, 0); } catch { end(); } }, 250);
setTimeout(end, ${(timeoutS + SELF_KILL_GRACE_S) * 1000});`;
  new Worker(URL.createObjectURL(new Blob([code], { type: "application/javascript" })));
}

/**
 * The `serve-bin plan` process: takes one request over IPC, imports the
 * graph module, answers with its graph as data, then waits to be killed
 * (the server reaps it; the module may have left timers running).
 */
export async function runPlanner(): Promise<void> {
  // The server went away: nothing is waiting for the answer.
  process.on("disconnect", () => process.exit(0));
  const request = await new Promise<PlanRequest>((resolve) => process.once("message", (m) => resolve(m as PlanRequest)));
  startWatchdog(request.timeoutS);
  let reply: PlanReply;
  try {
    reply = { t: "planned", graph: graphPlanOf(await loadGraph(request.modulePath, request.exportName, request.fileHash)) };
  } catch (e) {
    reply = { t: "failed", error: failure(e, request.modulePath) };
  }
  try {
    process.send!(reply);
  } catch (e) {
    // A value in the code's options that cannot be copied (a function in userConfig): say so, not hang.
    process.send!({ t: "failed", error: failure(new ServeError("build", `cannot plan ${request.modulePath}: its graph cannot be sent to the server: ${(e as Error).message}`), request.modulePath) } satisfies PlanReply);
  }
}
