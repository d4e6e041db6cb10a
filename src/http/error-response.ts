import { ServeError } from "../error.ts";

export type ErrorDetail = "full" | "message";

/** A path of serve-bin's own run files: the run directory's sockets, the shared-memory arenas. */
const RUN_FILE = /(@?)(?:\/[\w.-]+)*\/serve-bin-\d+-[\w.-]*(?:\/[\w.-]+)*/g;

/**
 * The message without the paths of serve-bin's run files, which say where
 * the server keeps its sockets and shared memory and help nobody outside.
 *
 * @example scrubPaths("(/dev/shm/serve-bin-7-9-ab is gone)") // "(<serve-bin run file> is gone)"
 */
export function scrubPaths(message: string): string {
  // A replica's id ends in "@<its socket>": the name before it says enough.
  return message.replace(RUN_FILE, (_, at: string) => (at ? "" : "<serve-bin run file>"));
}

/**
 * A ServeError as an HTTP JSON body. With errorDetail "full" the body carries
 * the stack; with "message", only the message, and no path of a run file.
 * Body: `{ error: code, message, deployment?, issues?, stack? }`; an
 * HttpError's status and its extra fields.
 */
export function errorResponse(err: unknown, detail: ErrorDetail = "full"): Response {
  const e = err instanceof ServeError ? err : new ServeError("internal", (err as Error)?.message ?? String(err), { causeStack: (err as Error)?.stack });
  const message = detail === "message" ? scrubPaths(e.message) : e.message;
  const body: Record<string, unknown> = { ...e.body, error: e.code === "http" ? codeFor(e.status) : e.code, message };
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
