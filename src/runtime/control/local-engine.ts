import { basename, dirname } from "node:path";
import type { Subprocess } from "bun";
import type { ControlFromReplica, ReplicaSpec } from "../channel/messages.ts";
import { selfCommand } from "../self-command.ts";
import type { Engine, ExitInfo, ReplicaEvents, ReplicaProcess } from "./engine.ts";

/** How to start this same program in the replica role, compiled or from source. */
export function replicaCommand(): string[] {
  return selfCommand("replica");
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

/**
 * Replicas as subprocesses of this one: the only code that spawns and kills
 * replicas (the planner, `../planner/planner.ts`, runs its own short-lived
 * process). The spec (with userConfig) goes over the IPC channel as the
 * first message, so `ps` shows no secrets.
 */
export class LocalEngine implements Engine {
  #running = 0;

  get running(): number {
    return this.#running;
  }

  start(spec: ReplicaSpec, env: Record<string, string>, events: ReplicaEvents): ReplicaProcess {
    const prefix = `[${spec.app}/${spec.replicaId}]`;
    let resolveExit!: (info: ExitInfo) => void;
    const exited = new Promise<ExitInfo>((r) => (resolveExit = r));
    // The command line names the replica and its run directory (which carries the server's pid), nothing secret.
    const child: Subprocess<"ignore", "pipe", "pipe"> = Bun.spawn([...replicaCommand(), spec.replicaId, basename(dirname(spec.socket))], {
      env: { ...process.env, ...env },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      serialization: "advanced",
      ipc: (msg) => events.message(msg as ControlFromReplica),
      onExit: (_p, code, signal) => {
        this.#running--;
        const info = { code, signal: signal ? String(signal) : null };
        resolveExit(info);
        events.exit(info);
      },
    });
    this.#running++;
    child.send({ t: "start", spec });
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
      exited,
    };
  }
}
