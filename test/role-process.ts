/**
 * A cluster role (`serve-bin controller|proxy|replica`) as a process of its
 * own, its output collected so a test can wait for a line.
 */
import type { Subprocess } from "bun";
import { cliCommand, waitFor } from "./harness.ts";

export interface Role {
  name: string;
  proc: Subprocess<"ignore", "pipe", "pipe">;
  out: string;
  /** Resolves with the first match of `re` in the role's output. */
  line(re: RegExp, what: string, timeoutMs?: number): Promise<RegExpExecArray>;
}

/** Starts `serve-bin ARGS` (from source, or the compiled binary) with the cluster token `secret`, and adds it to `roles` (for the test's cleanup). */
export function startRole(roles: Role[], secret: string, name: string, args: string[], env: Record<string, string> = {}, compiled = false): Role {
  const proc = Bun.spawn([...cliCommand(compiled), ...args], {
    env: { ...process.env, SERVE_BIN_CLUSTER_TOKEN: secret, SERVE_BIN_CLUSTER_TOKEN_FILE: "", SERVE_BIN_ADMIN_TOKEN: "", ...env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const role: Role = { name, proc, out: "", line: (re, what, t = 30_000) => waitFor(() => re.exec(role.out), `${name}: ${what}\n${role.out}`, t) };
  for (const s of [proc.stdout, proc.stderr]) {
    void (async () => {
      const dec = new TextDecoder();
      for await (const chunk of s) role.out += dec.decode(chunk);
    })();
  }
  roles.push(role);
  return role;
}

/**
 * Ends every role still running: SIGTERM first (a controller then removes its
 * run directory and shared memory), SIGKILL for any still there after
 * `graceMs`, and waits for every exit.
 */
export async function endRoles(roles: Role[], graceMs = 15_000): Promise<void> {
  const alive = roles.filter((r) => r.proc.exitCode === null && r.proc.signalCode === null);
  for (const r of alive) r.proc.kill("SIGTERM");
  const all = Promise.all(alive.map((r) => r.proc.exited));
  // A bound for cleanup only: whatever did not go by then is killed.
  await Promise.race([all, Bun.sleep(graceMs)]);
  for (const r of alive) if (r.proc.exitCode === null && r.proc.signalCode === null) r.proc.kill("SIGKILL");
  await all;
}
