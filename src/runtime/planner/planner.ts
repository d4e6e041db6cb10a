import type { Subprocess } from "bun";
import { ServeError } from "../../error.ts";
import { selfCommand } from "../self-command.ts";
import type { GraphPlan } from "./graph-plan.ts";
import type { PlanReply, PlanRequest } from "./messages.ts";

/** Planning processes alive now: killed if this process exits first, so none outlives it. */
const live = new Set<Subprocess>();
let hooked = false;
/** One planning process at a time: a burst of PUTs cannot fork a process per request. */
let queue: Promise<unknown> = Promise.resolve();
/**
 * Graphs already planned, by module, export and file hash: a PUT that keeps a
 * file as it was does not start a process for it again (as the module cache
 * made the same file import only once before). Bounded, oldest first out.
 */
const planned = new Map<string, GraphPlan>();
const PLANNED_KEPT = 64;

function killAllOnExit(): void {
  if (hooked) return;
  hooked = true;
  process.on("exit", () => {
    for (const child of live) child.kill("SIGKILL");
  });
}

/**
 * Imports a graph module in a short-lived `serve-bin plan` process and
 * returns its graph as data. The module's top-level code (however slow, or
 * if it throws, hangs or exits) runs there, never on this event loop. The
 * process is killed once it answers (a module may leave timers or servers
 * running), after `timeoutS`, or when it fails; it is always reaped before
 * this resolves. Calls run one at a time; a file planned before (same
 * content hash) is answered from memory.
 */
export function planInSubprocess(request: Omit<PlanRequest, "t" | "timeoutS">, timeoutS: number): Promise<GraphPlan> {
  const key = JSON.stringify([request.modulePath, request.exportName, request.fileHash]);
  const known = planned.get(key);
  if (known) return Promise.resolve(known);
  const run = queue.then(() => planOnce(request, timeoutS));
  queue = run.catch(() => {});
  return run.then((graph) => {
    planned.set(key, graph);
    if (planned.size > PLANNED_KEPT) planned.delete(planned.keys().next().value!);
    return graph;
  });
}

async function planOnce(request: Omit<PlanRequest, "t" | "timeoutS">, timeoutS: number): Promise<GraphPlan> {
  killAllOnExit();
  const { modulePath } = request;
  let settle!: (r: PlanReply | { t: "timeout" }) => void;
  const answered = new Promise<PlanReply | { t: "timeout" }>((r) => (settle = r));
  // The module path on the command line is for `ps` only (the request comes over IPC); the
  // module's own output goes where the server's does, as when the server imported it.
  const child = Bun.spawn(selfCommand("plan", modulePath), {
    stdin: "ignore",
    stdout: "inherit",
    stderr: "inherit",
    serialization: "advanced",
    ipc: (msg) => settle(msg as PlanReply),
  });
  live.add(child);
  const timer = setTimeout(() => settle({ t: "timeout" }), timeoutS * 1000);
  try {
    child.send({ t: "plan", ...request, timeoutS } satisfies PlanRequest);
    const exited = child.exited.then((code) => ({ code, signal: child.signalCode }));
    const first = await Promise.race([answered, exited]);
    if ("t" in first) {
      if (first.t === "planned") return first.graph;
      if (first.t === "failed") {
        const { code, message, ...fields } = first.error;
        throw new ServeError(code, message, fields);
      }
      throw new ServeError(
        "build",
        `cannot import ${modulePath}: its top-level code was still running after limits.planTimeoutS (${timeoutS} s), so its planning process was killed. Move slow work such as loading a model into a class deployment's constructor (it runs in each replica), or raise limits.planTimeoutS`,
      );
    }
    const how = first.signal ? `signal ${first.signal}` : `exit code ${first.code}`;
    throw new ServeError(
      "build",
      `cannot import ${modulePath}: the module ended its planning process (${how}) before its graph was built; a graph module must not call process.exit or crash at top level`,
    );
  } finally {
    clearTimeout(timer);
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await child.exited;
    live.delete(child);
  }
}
