import { readFileSync, statSync } from "node:fs";
import { parseArgs, type ParseArgsConfig } from "node:util";

/** A usage mistake: the CLI prints it and exits 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

type Options = NonNullable<ParseArgsConfig["options"]>;

/** node:util parseArgs with messages that say what to fix. */
export function parse<O extends Options>(argv: string[], options: O, usage: string) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError(`${(e as Error).message.replace(/^TypeError \[[A-Z_]+\]: /, "")}\nusage: ${usage}`);
  }
}

export function portOf(value: string | undefined, flag: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new UsageError(`${flag} takes a port number from 0 to 65535 (0 picks a free one), not "${value}"`);
  return n;
}

/** Flags that give the admin token. */
export const tokenFlags = {
  "admin-token": { type: "string" },
  "admin-token-file": { type: "string" },
} as const;

/** Common flags of commands that talk to a running server. */
export const addressFlags = {
  address: { type: "string" },
  ...tokenFlags,
} as const;

/**
 * The admin token: from --admin-token-file (the file's first line), else
 * --admin-token, else SERVE_BIN_ADMIN_TOKEN. A token on the command line is
 * readable by every user of the machine (ps, /proc/<pid>/cmdline), so that
 * form prints a warning.
 *
 * @example adminToken({ "admin-token-file": "/run/secrets/token" }, env.adminToken, console.error)
 */
export function adminToken(values: { "admin-token"?: string; "admin-token-file"?: string }, fromEnv: string | undefined, warn: (line: string) => void): string | undefined {
  const file = values["admin-token-file"];
  if (file !== undefined && values["admin-token"] !== undefined) throw new UsageError("give the admin token once: --admin-token-file or --admin-token, not both");
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (e) {
      throw new UsageError(`--admin-token-file ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); give a readable file holding the token`);
    }
    const token = text.split(/\r?\n/)[0]!.trim();
    if (!token) throw new UsageError(`--admin-token-file ${file} is empty; write the token on its first line`);
    if (statSync(file).mode & 0o077) warn(`serve-bin: warning: ${file} can be read by other users; chmod 600 it`);
    return token;
  }
  if (values["admin-token"] !== undefined) {
    warn("serve-bin: warning: --admin-token is visible to every user of this machine (ps, /proc/<pid>/cmdline); use --admin-token-file PATH or SERVE_BIN_ADMIN_TOKEN instead");
    return values["admin-token"];
  }
  return fromEnv;
}

/** The admin API's URL: --address, else the default admin port on loopback. */
export function adminAddress(value: string | undefined): string {
  const url = value ?? "http://127.0.0.1:8265";
  if (!/^https?:\/\//.test(url)) throw new UsageError(`--address takes a URL like http://127.0.0.1:8265, not "${url}"`);
  return url.replace(/\/+$/, "");
}
