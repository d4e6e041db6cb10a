import { fileURLToPath } from "node:url";
import type { Subprocess } from "bun";
import type { ControlFromReplica, ControlToReplica, ReplicaSpec } from "./channel/messages.ts";

/** A running replica process, as the controller sees it. */
export interface ReplicaProcess {
  readonly pid: number;
  send(msg: ControlToReplica): void;
  kill(signal?: NodeJS.Signals): void;
  readonly exited: Promise<number>;
}

export interface SpawnHandlers {
  message(msg: ControlFromReplica): void;
  exit(code: number, signal: string | null): void;
}

/** The only code that starts and ends processes. */
export interface Supervisor {
  spawn(spec: ReplicaSpec, env: Record<string, string>, handlers: SpawnHandlers): ReplicaProcess;
}

/** How to start this same program in the replica role, compiled or from source. */
export function replicaCommand(): string[] {
  // Compiled, this module lives in Bun's embedded filesystem (/$bunfs/…).
  if (fileURLToPath(import.meta.url).startsWith("/$bunfs/")) return [process.execPath, "replica"];
  return [process.execPath, fileURLToPath(new URL("../cli/main.ts", import.meta.url)), "replica"];
}

/** Copies a child's output to ours, each line prefixed with the replica's name. */
async function pipeLines(stream: ReadableStream<Uint8Array>, prefix: string, out: NodeJS.WriteStream): Promise<void> {
  const decoder = new TextDecoder();
  let rest = "";
  for await (const chunk of stream) {
    const lines = (rest + decoder.decode(chunk, { stream: true })).split("\n");
    rest = lines.pop()!;
    if (lines.length) out.write(lines.map((l) => `${prefix} ${l}\n`).join(""));
  }
  if (rest) out.write(`${prefix} ${rest}\n`);
}

export class ProcessSupervisor implements Supervisor {
  spawn(spec: ReplicaSpec, env: Record<string, string>, handlers: SpawnHandlers): ReplicaProcess {
    const prefix = `[${spec.app}/${spec.replicaId}]`;
    const child: Subprocess<"ignore", "pipe", "pipe"> = Bun.spawn([...replicaCommand(), JSON.stringify(spec)], {
      env: { ...process.env, ...env },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      serialization: "advanced",
      ipc: (msg) => handlers.message(msg as ControlFromReplica),
      onExit: (_p, code, signal) => handlers.exit(code ?? -1, signal ? String(signal) : null),
    });
    void pipeLines(child.stdout, prefix, process.stdout);
    void pipeLines(child.stderr, prefix, process.stderr);
    return {
      pid: child.pid,
      send: (msg) => {
        try {
          child.send(msg);
        } catch {
          // The process is gone; its exit handler reports it.
        }
      },
      kill: (signal = "SIGKILL") => {
        if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      },
      exited: child.exited,
    };
  }
}
