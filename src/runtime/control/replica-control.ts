import type { SerializedServeError } from "../../error.ts";
import type { ControlToReplica, ProxySnapshot, RoutingTable } from "../channel/messages.ts";
import type { ReplicaProcess } from "./engine.ts";

type Request = Extract<ControlToReplica, { seq: number }>;

/**
 * The control side of one replica process: request/answer calls over its
 * control channel (reconfigure, health), routing and limit pushes, and one
 * `stop()` that drains, then kills what does not leave in time.
 */
export class ReplicaControl {
  readonly #replies = new Map<number, (error?: SerializedServeError) => void>();
  #seq = 1;
  #stopping = false;

  constructor(
    readonly proc: ReplicaProcess,
    readonly label: string,
  ) {}

  /** Called with each `done` message the replica sends. */
  answered(seq: number, error?: SerializedServeError): void {
    this.#replies.get(seq)?.(error);
  }

  /** Resolves with the replica's error, a timeout, or undefined when it did it. */
  request(make: (seq: number) => Request, timeoutMs: number): Promise<SerializedServeError | undefined> {
    const seq = this.#seq++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => done({ code: "timeout", message: `replica ${this.label} did not answer within ${timeoutMs / 1000} s` }), timeoutMs);
      const done = (error?: SerializedServeError) => {
        clearTimeout(timer);
        this.#replies.delete(seq);
        resolve(error);
      };
      this.#replies.set(seq, done);
      void this.proc.exited.then(() => done({ code: "unavailable", message: `replica ${this.label} exited` }));
      this.proc.send(make(seq));
    });
  }

  reconfigure(userConfig: unknown, timeoutMs: number): Promise<SerializedServeError | undefined> {
    return this.request((seq) => ({ t: "reconfigure", seq, userConfig }), timeoutMs);
  }

  checkHealth(timeoutMs: number): Promise<SerializedServeError | undefined> {
    return this.request((seq) => ({ t: "health", seq }), timeoutMs);
  }

  routes(table: RoutingTable): void {
    this.proc.send({ t: "routes", table });
  }

  /** An ingress replica stops listening on the data-plane port; resolves once the requests it held are answered. */
  closeListener(timeoutS: number): Promise<SerializedServeError | undefined> {
    return this.request((seq) => ({ t: "close-listener", seq, timeoutS }), timeoutS * 1000 + 2000);
  }

  proxyRoutes(snapshot: ProxySnapshot): void {
    this.proc.send({ t: "proxy-routes", snapshot });
  }

  limits(maxOngoingRequests: number): void {
    this.proc.send({ t: "limits", maxOngoingRequests });
  }

  /**
   * Graceful: the replica finishes its calls in flight (at most `drainS`),
   * then exits; killed 2 s after that if it has not. Not graceful (starting,
   * or not answering): killed at once.
   */
  stop(graceful: boolean, drainS: number): void {
    if (this.#stopping) return;
    this.#stopping = true;
    if (!graceful) return this.proc.kill("SIGKILL");
    this.proc.send({ t: "drain", timeoutS: drainS });
    const hard = setTimeout(() => this.proc.kill("SIGKILL"), (drainS + 2) * 1000);
    void this.proc.exited.then(() => clearTimeout(hard));
  }
}
