import { ServeError } from "../error.ts";

export type ErrorDetail = "full" | "message";

/**
 * A ServeError as an HTTP JSON body. With errorDetail "full" the body carries
 * the stack; with "message", only the message.
 * Body: `{ error: code, message, deployment?, issues?, stack? }`; an
 * HttpError's status and its extra fields.
 */
export function errorResponse(err: unknown, detail: ErrorDetail = "full"): Response {
  const e = err instanceof ServeError ? err : new ServeError("internal", (err as Error)?.message ?? String(err), { causeStack: (err as Error)?.stack });
  const body: Record<string, unknown> = { ...e.body, error: e.code === "http" ? codeFor(e.status) : e.code, message: e.message };
  if (e.deployment !== undefined) body.deployment = e.deployment;
  if (e.issues !== undefined) body.issues = e.issues;
  if (detail === "full" && (e.code === "user" || e.code === "internal" || e.code === "encode")) body.stack = e.causeStack ?? e.stack;
  return Response.json(body, { status: e.status });
}

/** The `error` of an HttpError's body: serve-bin's own code for that status where it has one, else `http_<status>`. */
function codeFor(status: number): string {
  return CODE_BY_STATUS.get(status) ?? `http_${status}`;
}

const CODE_BY_STATUS = new Map<number, string>([
  [400, "bad_request"],
  [401, "unauthorized"],
  [403, "forbidden"],
  [404, "not_found"],
  [409, "conflict"],
  [413, "payload_too_large"],
  [422, "invalid"],
  [429, "too_many_requests"],
  [500, "internal"],
  [503, "unavailable"],
  [504, "timeout"],
]);
