import type { ReplicaProcess } from "./supervisor.ts";

/** Ray's replica states; the transition table below is the only way they change. */
export type ReplicaState = "STARTING" | "UPDATING" | "RUNNING" | "STOPPING";

const TRANSITIONS: Record<ReplicaState, readonly ReplicaState[]> = {
  STARTING: ["RUNNING", "STOPPING"],
  RUNNING: ["UPDATING", "STOPPING"],
  UPDATING: ["RUNNING", "STOPPING"],
  STOPPING: [],
};

/** One replica process and what the controller knows of it. */
export class ReplicaRecord {
  state: ReplicaState = "STARTING";
  /** Calls in flight, as the replica last reported. */
  ongoing = 0;
  /** The userConfig generation it runs. */
  userConfigGen: number;
  lastHealthAt = Date.now();
  healthPendingSince = 0;
  readonly startedAt = Date.now();

  constructor(
    readonly id: string,
    readonly version: string,
    readonly socket: string,
    readonly proc: ReplicaProcess,
    readonly restarts: number,
    userConfigGen: number,
  ) {
    this.userConfigGen = userConfigGen;
  }

  to(next: ReplicaState): void {
    if (this.state === next) return;
    if (!TRANSITIONS[this.state].includes(next)) throw new Error(`replica ${this.id}: ${this.state} → ${next} is not a valid transition`);
    this.state = next;
  }

  get serving(): boolean {
    return this.state === "RUNNING" || this.state === "UPDATING";
  }
}
