/**
 * Issue 17 item 7 (the token part): `--admin-token T` is readable by every
 * user of the machine in `ps` (/proc/<pid>/cmdline). `--admin-token-file`
 * keeps it off the command line; `--admin-token` still works, with a warning.
 */
import { describe, expect, it } from "vitest";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT, runCli, startServer, stopCleanly, tempDir } from "./harness.ts";

const TOKEN = "file-token-7f3a";
const WARNING = "serve-bin: warning: --admin-token is visible to every user of this machine (ps, /proc/<pid>/cmdline); use --admin-token-file PATH or SERVE_BIN_ADMIN_TOKEN instead";

describe("the admin token from a file", () => {
  it("serves with --admin-token-file: the token is required, is not in the process's command line, and the CLI reads it the same way", async () => {
    await using dir = tempDir();
    const file = join(dir.path, "token");
    writeFileSync(file, `${TOKEN}\n`, { mode: 0o600 });
    const server = await startServer("examples/diamond/graph.ts", { cwd: ROOT, args: ["--admin-token-file", file] });
    try {
      expect(readFileSync(`/proc/${server.proc.pid}/cmdline`, "utf8")).not.toContain(TOKEN);
      expect(server.output()).not.toContain("warning");
      expect((await fetch(`${server.adminUrl}/api/applications`)).status).toBe(401);
      expect((await fetch(`${server.adminUrl}/api/applications`, { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(200);
      const status = await runCli(["status", "--address", server.adminUrl, "--admin-token-file", file]);
      expect({ code: status.code, stderr: status.stderr }).toEqual({ code: 0, stderr: "" });
      const argv = await runCli(["status", "--address", server.adminUrl, "--admin-token", TOKEN]);
      expect({ code: argv.code, stderr: argv.stderr }).toEqual({ code: 0, stderr: `${WARNING}\n` });
    } finally {
      await stopCleanly(server);
    }
  });

  it("warns when the token comes from the command line, and still uses it", async () => {
    const server = await startServer("examples/diamond/graph.ts", { cwd: ROOT, args: ["--admin-token", TOKEN] });
    try {
      expect(server.output()).toContain(WARNING);
      expect((await fetch(`${server.adminUrl}/api/applications`, { headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(200);
    } finally {
      await stopCleanly(server);
    }
  });

  it("exits 2 with what to fix for a missing or empty file, or both flags", async () => {
    await using dir = tempDir();
    const empty = join(dir.path, "empty");
    writeFileSync(empty, "\n", { mode: 0o600 });
    const cases: [string[], RegExp][] = [
      [["--admin-token-file", join(dir.path, "nope")], /--admin-token-file .*nope: cannot read it \(ENOENT\); give a readable file holding the token/],
      [["--admin-token-file", empty], /--admin-token-file .*empty is empty; write the token on its first line/],
      [["--admin-token-file", empty, "--admin-token", "x"], /give the admin token once: --admin-token-file or --admin-token, not both/],
    ];
    for (const [args, message] of cases) {
      const r = await runCli(["run", "examples/diamond/graph.ts", "--port", "0", "--admin-port", "0", ...args]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(message);
    }
  });
});
