/**
 * Docker for the image tests: the CLI run to completion, containers and
 * images recorded by id as they are made and removed by id at the end.
 */
import { spawnSync } from "node:child_process";
import { ROOT } from "./harness.ts";

/** Why docker cannot run here, or null when it can. */
export function dockerUnavailable(): string | null {
  const r = spawnSync("docker", ["version", "--format", "{{.Server.Version}}"], { encoding: "utf8", timeout: 15_000 });
  if ((r.error as NodeJS.ErrnoException | undefined)?.code === "ENOENT") return "no docker CLI on PATH";
  if (r.error) return `docker version failed: ${r.error.message}`;
  if (r.status !== 0) return `no Docker daemon answers (${(r.stderr || r.stdout).trim().split("\n").pop()})`;
  return null;
}

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `docker ...args` to completion; rejects on a non-zero exit unless `allowFail`. */
export async function docker(args: string[], opts: { allowFail?: boolean; timeoutMs?: number; cwd?: string } = {}): Promise<Run> {
  const proc = Bun.spawn(["docker", ...args], { cwd: opts.cwd ?? ROOT, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => proc.kill("SIGKILL"), opts.timeoutMs ?? 60_000);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  if (code !== 0 && !opts.allowFail) throw new Error(`docker ${args.join(" ")} exited ${code}:\n${stderr}${stdout}`);
  return { code, stdout: stdout.trim(), stderr: stderr.trim() };
}

/** The host address docker mapped a container port to (published on 127.0.0.1 with no host port). */
export async function hostPort(id: string, port: number): Promise<string> {
  const out = (await docker(["port", id, `${port}/tcp`])).stdout;
  return `http://${out.split("\n")[0]!.trim()}`;
}

export async function logs(id: string): Promise<string> {
  const r = await docker(["logs", id], { allowFail: true });
  return `${r.stdout}\n${r.stderr}`;
}

export async function inspect(id: string, format: string): Promise<string> {
  return (await docker(["inspect", "--format", format, id])).stdout;
}

/** What one test file makes, labelled with its run id, removed by id in `removeAll`. */
export function dockerScope() {
  const runId = `${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const label = `serve-bin-test=${runId}`;
  const made = { containers: [] as string[], images: [] as string[] };
  return {
    runId,
    label,
    made,
    /** `docker create` (id recorded at once, for cleanup) then `docker start`: a `docker run -d`. */
    async runContainer(args: string[]): Promise<string> {
      const id = (await docker(["create", "--label", label, ...args])).stdout.split("\n").pop()!;
      made.containers.push(id);
      await docker(["start", id]);
      return id;
    },
    /** Containers first, then images, newest first. */
    async removeAll(): Promise<void> {
      for (const id of made.containers.reverse()) await docker(["rm", "-f", "-v", id], { allowFail: true });
      for (const id of made.images.reverse()) await docker(["rmi", "-f", id], { allowFail: true });
    },
  };
}
