/**
 * The one seam between the graph and where code runs. Local execution calls
 * instances in this process; a replica calls other replicas over sockets.
 * Handles and the graph walker only ever talk to an Invoker.
 */
export interface CallOptions {
  /** Seconds before the call fails with 504; undefined = the request's deadline. */
  timeoutS?: number;
  /** The caller's request: id and abort signal travel with the call. */
  requestId?: string;
  signal?: AbortSignal;
}

export interface Invoker {
  /** Calls `method` (null: the function, or a class's `__call__`) of a deployment. */
  call(deployment: string, method: string | null, args: unknown[], opts?: CallOptions): Promise<unknown>;
  /** Calls an async-generator method and yields its chunks. */
  stream(deployment: string, method: string | null, args: unknown[], opts?: CallOptions): AsyncIterable<unknown>;
}
