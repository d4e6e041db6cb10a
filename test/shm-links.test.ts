/**
 * Issue 17 item 1: /dev/shm and the temp dir are writable by every user, so a
 * name that looks like a dead process's arena or run directory may be a link
 * to something alive. The sweeps must never follow one: here a symlink and a
 * hard link to a running server's own arena, and symlinks to files of the
 * test's own, are put under dead-pid names; the server's reaper and a new
 * server's start-up sweep run; every target is untouched and the server still
 * serves 64 KiB bodies through that arena (before the fix: the arena was
 * shrunk and the next large body ended the server with SIGBUS).
 */
import { describe, expect, it } from "vitest";
import { existsSync, linkSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT, startServer, stopCleanly, tempDir, waitFor } from "./harness.ts";

const GRAPH = join(ROOT, "test/fixtures/shm-graph.ts");
/** A pid above the kernel's pid_max (4194304): never alive. */
const DEAD = 4_000_002;

const body = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + 7) & 0xff);
const xorThenReverse = (b: Uint8Array) => b.map((x) => x ^ 0x5a).reverse();

async function roundTrip(url: string, n: number): Promise<boolean> {
  const sent = body(n);
  const res = await fetch(`${url}/bytes`, { method: "POST", body: sent, headers: { "content-type": "application/octet-stream" } });
  return res.status === 200 && Bun.deepEquals(new Uint8Array(await res.arrayBuffer()), xorThenReverse(sent));
}

describe("the dead-arena and run-directory sweeps never follow a link", () => {
  it("leaves a live arena linked under a dead pid's name whole, and the server keeps serving large bodies", async () => {
    await using dir = tempDir();
    const config = join(dir.path, "shm.json");
    writeFileSync(config, JSON.stringify({ sharedMemory: { thresholdBytes: 16384, arenaBytes: 8 << 20 }, applications: [{ name: "default", importPath: GRAPH }] }));
    const server = await startServer(config, { args: ["--app-dir", ROOT] });
    const pid = server.proc.pid;
    const made: string[] = [];
    try {
      expect(await roundTrip(server.url, 64 * 1024)).toBe(true);
      const own = readdirSync("/dev/shm").find((n) => n.startsWith(`serve-bin-${pid}-${pid}-`));
      expect(own).toBeDefined();
      const arena = join("/dev/shm", own!);
      const size = statSync(arena).size;
      const head = readFileSync(arena).subarray(0, 64);

      const symlink = join("/dev/shm", `serve-bin-${pid}-${DEAD}-zz`);
      const hardlink = join("/dev/shm", `serve-bin-${pid}-${DEAD + 1}-hh`);
      const mine = join(dir.path, "precious.bin");
      writeFileSync(mine, head); // looks like an arena: magic and all
      const toMine = join("/dev/shm", `serve-bin-${pid}-${DEAD + 2}-mm`);
      // A regular leftover of a dead replica: the reaper removes it, which shows that a pass ran.
      const marker = join("/dev/shm", `serve-bin-${pid}-${DEAD + 3}-mk`);
      symlinkSync(arena, symlink);
      linkSync(arena, hardlink);
      symlinkSync(mine, toMine);
      writeFileSync(marker, new Uint8Array(4096));
      made.push(symlink, hardlink, toMine, marker);

      await waitFor(() => !existsSync(marker), "the server's reaper to remove a dead replica's arena", 30_000, 100);
      expect(statSync(arena).size).toBe(size);
      expect(readFileSync(arena).subarray(0, 64)).toEqual(head);
      expect(readFileSync(mine)).toEqual(head);
      expect([lstatSync(symlink).isSymbolicLink(), statSync(hardlink).nlink]).toEqual([true, 2]);
      for (const n of [16 * 1024, 64 * 1024, 1 << 20]) expect(await roundTrip(server.url, n)).toBe(true);
      expect(server.proc.exitCode).toBe(null);
    } finally {
      for (const p of made) rmSync(p, { force: true });
      await stopCleanly(server);
    }
  });

  it("a new server's start-up sweep removes only real leftovers, never what a link under a dead pid's name points at", async () => {
    await using dir = tempDir();
    const keepDir = join(dir.path, "keep");
    mkdirSync(keepDir);
    writeFileSync(join(keepDir, "data"), "mine");
    const keepFile = join(dir.path, "file");
    writeFileSync(keepFile, "also mine");
    // The server gets a temp dir of its own (TMPDIR): a server another test file starts meanwhile
    // sweeps the shared one too, and would remove the leftover for it.
    const tmp = join(dir.path, "tmp");
    mkdirSync(tmp);
    const links = [join(tmp, `serve-bin-${DEAD}-lnkdir`), join("/dev/shm", `serve-bin-${DEAD}-1-lnkfile`)];
    symlinkSync(keepDir, links[0]!);
    symlinkSync(keepFile, links[1]!);
    const leftover = join(tmp, `serve-bin-${DEAD}-real`);
    mkdirSync(leftover);
    try {
      const server = await startServer("examples/tutorial/graph.ts", { cwd: ROOT, env: { TMPDIR: tmp } });
      try {
        expect(existsSync(leftover)).toBe(false); // the sweep ran
        expect([readFileSync(join(keepDir, "data"), "utf8"), readFileSync(keepFile, "utf8")]).toEqual(["mine", "also mine"]);
      } finally {
        await stopCleanly(server);
      }
      // stopCleanly looked in the shared temp dir; the server's run directory was in its own.
      expect(readdirSync(tmp)).toEqual([`serve-bin-${DEAD}-lnkdir`]);
    } finally {
      for (const p of [...links, leftover]) rmSync(p, { force: true, recursive: true });
    }
  });
});
