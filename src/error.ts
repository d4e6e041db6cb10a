import { HttpError } from "./http-error.ts";

/**
 * One error type for everything serve-bin reports, with a closed set of codes
 * and one table from code to HTTP status. Messages say what to do.
 */
export type ServeErrorCode =
  | "bad_request" // malformed input from a client (bad JSON, bad ndarray)
  | "not_found" // unknown route, application or deployment
  | "unauthorized" // admin token missing or wrong
  | "forbidden" // refused by where it comes from: a foreign Host or a cross-site Origin
  | "request_timeout" // the client took too long to send its body
  | "payload_too_large" // body over proxy.maxBodyBytes
  | "unsupported_media_type" // a write whose Content-Type is not JSON (or YAML)
  | "conflict" // the change belongs to another owner (an HPA scales this deployment)
  | "invalid" // fails validation (zod issues in `issues`)
  | "build" // the graph cannot be built (bind-time and build-time mistakes)
  | "encode" // a value the wire codec cannot carry
  | "user" // the user's code threw
  | "http" // the user's code threw an HttpError: its own status (in `httpStatus`)
  | "unavailable" // no replica can take it: queue full, replica died, draining
  | "timeout" // requestTimeoutS passed
  | "cancelled" // the client went away
  | "internal"; // a bug in serve-bin

export const statusOf: Record<ServeErrorCode, number> = {
  bad_request: 400,
  not_found: 404,
  unauthorized: 401,
  forbidden: 403,
  request_timeout: 408,
  payload_too_large: 413,
  unsupported_media_type: 415,
  conflict: 409,
  invalid: 422,
  build: 422,
  encode: 500,
  user: 500,
  http: 500, // only when no httpStatus came with it
  unavailable: 503,
  timeout: 504,
  cancelled: 499,
  internal: 500,
};

export interface Issue {
  path: (string | number)[];
  message: string;
}

export interface ServeErrorFields {
  deployment?: string;
  issues?: Issue[];
  /** The user's own error name and stack, when code is "user". */
  causeName?: string;
  causeStack?: string;
  /** The status an HttpError asked for, when code is "http". */
  httpStatus?: number;
  /** An HttpError's extra JSON fields. */
  body?: Record<string, unknown>;
}

export class ServeError extends Error {
  override name = "ServeError";
  readonly code: ServeErrorCode;
  readonly deployment?: string;
  readonly issues?: Issue[];
  readonly causeName?: string;
  readonly causeStack?: string;
  readonly httpStatus?: number;
  readonly body?: Record<string, unknown>;

  constructor(code: ServeErrorCode, message: string, fields: ServeErrorFields = {}) {
    super(message);
    this.code = code;
    this.deployment = fields.deployment;
    this.issues = fields.issues;
    this.causeName = fields.causeName;
    this.causeStack = fields.causeStack;
    this.httpStatus = fields.httpStatus;
    this.body = fields.body;
  }

  get status(): number {
    return this.httpStatus ?? statusOf[this.code];
  }

  /** Plain data, for the wire and for JSON bodies. */
  toJSON(): SerializedServeError {
    return {
      code: this.code,
      message: this.message,
      ...(this.deployment !== undefined && { deployment: this.deployment }),
      ...(this.issues !== undefined && { issues: this.issues }),
      ...(this.causeName !== undefined && { causeName: this.causeName }),
      ...(this.httpStatus !== undefined && { httpStatus: this.httpStatus }),
      ...(this.body !== undefined && { body: this.body }),
      stack: this.causeStack ?? this.stack ?? "",
    };
  }

  static fromJSON(data: SerializedServeError): ServeError {
    const e = new ServeError(data.code, data.message, data);
    if (data.stack) e.stack = data.stack;
    return e;
  }

  /** Wraps anything a user's code threw, keeping its message, name and stack. */
  static fromUser(err: unknown, deployment: string): ServeError {
    if (err instanceof ServeError) return err;
    if (err instanceof HttpError) return new ServeError("http", err.message, { deployment, causeName: err.name, causeStack: err.stack, httpStatus: err.status, body: err.body });
    const e = err instanceof Error ? err : new Error(String(err));
    // A value the codec cannot carry is the user's mistake too, but its own kind: 500 "encode".
    const code = e.name === "EncodeError" ? "encode" : "user";
    return new ServeError(code, e.message, { deployment, causeName: e.name, causeStack: e.stack });
  }
}

export interface SerializedServeError {
  code: ServeErrorCode;
  message: string;
  deployment?: string;
  issues?: Issue[];
  causeName?: string;
  httpStatus?: number;
  body?: Record<string, unknown>;
  stack?: string;
}
