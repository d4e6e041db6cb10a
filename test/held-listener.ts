/**
 * A TCP listener that never completes a connection: its accept queue (backlog
 * 0) is already full, so the kernel drops every further SYN and a dial to it
 * hangs as a dial to an address that is gone or not yet routed does. Held by
 * python3 (Bun's listeners always accept).
 */
import { spawn, spawnSync } from "node:child_process";
import { createInterface } from "node:readline";

const HOLD = `
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(0)
filler = socket.create_connection(s.getsockname())
print(s.getsockname()[1], flush=True)
sys.stdin.read()
`;

/** Why a held listener cannot be made here, or null. */
export const noPython = spawnSync("sh", ["-c", "command -v python3"]).status !== 0 ? "python3 is not installed" : null;

/** Starts one; `stop()` ends its process. */
export async function heldListener(): Promise<{ port: number; stop(): void }> {
  const holder = spawn("python3", ["-c", HOLD], { stdio: ["pipe", "pipe", "inherit"] });
  const port = await new Promise<string>((resolve) => createInterface({ input: holder.stdout! }).once("line", resolve));
  return { port: Number(port), stop: () => void holder.kill() };
}
