import type { ControlFromReplica, ControlToReplica, ReplicaSpec } from "../channel/messages.ts";

/** How a replica process ended. `signal` is set when a signal ended it (SIGKILL from the OOM killer, too). */
export interface ExitInfo {
  code: number | null;
  signal: string | null;
  /** The replica's link went silent (a node cut off): its data links may stay half-open, so callers are told it is gone. */
  silent?: boolean;
  /**
   * Its engine took it away, not a fault of its own: Kubernetes deleted its pod (a scale-down, a node drain),
   * Swarm moved its task; the replica said so before it drained. A replacement starts at once, with no backoff.
   */
  evicted?: boolean;
}

/** A running replica as the controller sees it, whatever runs it. */
export interface ReplicaProcess {
  readonly pid: number;
  send(msg: ControlToReplica): void;
  kill(signal?: NodeJS.Signals): void;
  readonly exited: Promise<ExitInfo>;
}

export interface ReplicaEvents {
  message(msg: ControlFromReplica): void;
  exit(info: ExitInfo): void;
}

/**
 * What starts and ends replicas: local subprocesses today (`LocalEngine`); a
 * Docker Swarm or Kubernetes backend implements the same two calls, so the
 * controller and its state machine never know which one runs them.
 */
export interface Engine {
  /** Starts one replica; its spec reaches it over the control channel, never on a command line. */
  start(spec: ReplicaSpec, env: Record<string, string>, events: ReplicaEvents): ReplicaProcess;
  /** Replica processes alive now, for limits and for tests. */
  readonly running: number;
}

/** "exit code 1", "killed by SIGKILL (out of memory, or killed from outside)". */
export function describeExit(info: ExitInfo): string {
  if (info.signal === "SIGKILL") return "killed by SIGKILL (out of memory, or killed from outside)";
  if (info.signal) return `killed by ${info.signal}`;
  return `exit code ${info.code}`;
}
