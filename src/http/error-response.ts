import { ServeError, statusOf } from "../error.ts";

export type ErrorDetail = "full" | "message";

/**
 * A ServeError as an HTTP JSON body. With errorDetail "full" the body carries
 * the stack; with "message", only the message.
 * Body: `{ error: code, message, deployment?, issues?, stack? }`.
 */
export function errorResponse(err: unknown, detail: ErrorDetail = "full"): Response {
  const e = err instanceof ServeError ? err : new ServeError("internal", (err as Error)?.message ?? String(err), { causeStack: (err as Error)?.stack });
  const body: Record<string, unknown> = { error: e.code, message: e.message };
  if (e.deployment !== undefined) body.deployment = e.deployment;
  if (e.issues !== undefined) body.issues = e.issues;
  if (detail === "full" && (e.code === "user" || e.code === "internal" || e.code === "encode")) body.stack = e.causeStack ?? e.stack;
  return Response.json(body, { status: statusOf[e.code] });
}
