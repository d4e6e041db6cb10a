import { lstatSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { processAlive } from "./process-alive.ts";

/**
 * The run's private directory for unix sockets: 0700, a short path (a socket
 * path must fit 107 bytes), named after the server's pid so that the next
 * start can sweep what a killed server left behind, and only that.
 */
const PREFIX = "serve-bin-";


/** Removes run directories (and shared-memory files) of servers that are gone. */
export function sweepDeadRuns(dirs: string[] = [tmpdir(), "/dev/shm"]): string[] {
  const removed: string[] = [];
  for (const dir of dirs) {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      continue;
    }
    for (const name of names) {
      const m = /^serve-bin-(\d+)-/.exec(name);
      if (!m || processAlive(Number(m[1]))) continue;
      const path = join(dir, name);
      try {
        // lstat, not stat: a name another user made may be a link to something of ours, which must stay.
        const st = lstatSync(path);
        if (st.uid !== process.getuid?.() || !(st.isDirectory() || (st.isFile() && st.nlink === 1))) continue;
        rmSync(path, { recursive: true, force: true });
        removed.push(path);
      } catch {}
    }
  }
  return removed;
}

export interface RunDir {
  readonly path: string;
  /** A fresh, short socket path inside the directory. */
  socketPath(name: string): string;
  remove(): void;
}

export function createRunDir(): RunDir {
  const rand = crypto.getRandomValues(new Uint32Array(1))[0]!.toString(36);
  const path = join(tmpdir(), `${PREFIX}${process.pid}-${rand}`);
  mkdirSync(path, { mode: 0o700 });
  return {
    path,
    socketPath: (name) => join(path, `${name}.sock`),
    remove: () => rmSync(path, { recursive: true, force: true }),
  };
}
