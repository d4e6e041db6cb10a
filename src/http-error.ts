/**
 * An error user code throws to answer the client with an HTTP status of its
 * choosing: from an HTTP adapter, an ingress, or any deployment the request
 * passes through (it keeps its status across processes). The client gets
 * `{ error, message, deployment, ...body }` as JSON with that status, without
 * a stack: this is an answer, not a crash.
 * @example
 * if (!item) throw new HttpError(404, `no item ${id}`, { id });
 */
export class HttpError extends Error {
  override name = "HttpError";
  /** Extra JSON fields of the response body (they cannot replace error, message or deployment). */
  readonly body?: Record<string, unknown>;

  constructor(
    /** A client or server error status, 400–599. */
    readonly status: number,
    message: string,
    body?: Record<string, unknown>,
  ) {
    if (!Number.isInteger(status) || status < 400 || status > 599) {
      throw new RangeError(`HttpError status must be an integer from 400 to 599, got ${status}; to answer with another status, return a Response`);
    }
    if (body !== undefined && (body === null || typeof body !== "object" || Array.isArray(body))) {
      throw new TypeError("HttpError body must be a plain object of extra JSON fields, e.g. { field: \"name\" }");
    }
    super(message);
    this.body = body;
  }
}
