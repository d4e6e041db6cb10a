/**
 * The one seam between the graph and where code runs. Local execution calls
 * instances in this process; a replica calls other replicas over sockets.
 * Handles and the graph walker only ever talk to an Invoker.
 */
import type { CancelToken } from "./request-context.ts";
import type { KeptRef } from "../wire/codec.ts";

export interface CallOptions {
  /** Seconds before the call fails with 504; undefined = the request's deadline. */
  timeoutS?: number;
  /** The caller's request: its id travels with the call, its cancellation cancels it. */
  requestId?: string;
  cancel?: CancelToken;
  /** The multiplexed model id the call carries (default: the current request's). */
  multiplexedModelId?: string;
  /** Resends of a call whose replica died while running it (the caller said it is idempotent). */
  maxRetries?: number;
}

export interface Invoker {
  /** Calls `method` (null: the function, or a class's `__call__`) of a deployment. */
  call(deployment: string, method: string | null, args: unknown[], opts?: CallOptions): Promise<unknown>;
  /** Calls an async-generator method and yields its chunks. */
  stream(deployment: string, method: string | null, args: unknown[], opts?: CallOptions): AsyncIterable<unknown>;
  /**
   * Forwarding (an invoker whose calls cross processes): like `call`, but the
   * result stays in the replica that made it and a reference comes back.
   * Handles then pass the reference on instead of the value (SPEC §1).
   */
  callKept?(deployment: string, method: string | null, args: unknown[], opts?: CallOptions): Promise<KeptRef>;
  /** Fetches a kept result (it stays kept until released). */
  fetchKept?(ref: KeptRef): Promise<unknown>;
  /** Drops a kept result. */
  releaseKept?(ref: KeptRef): void;
}
