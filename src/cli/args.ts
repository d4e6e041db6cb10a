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

/** Common flags of commands that talk to a running server. */
export const addressFlags = {
  address: { type: "string" },
  "admin-token": { type: "string" },
} as const;

/** The admin API's URL: --address, else the default admin port on loopback. */
export function adminAddress(value: string | undefined): string {
  const url = value ?? "http://127.0.0.1:8265";
  if (!/^https?:\/\//.test(url)) throw new UsageError(`--address takes a URL like http://127.0.0.1:8265, not "${url}"`);
  return url.replace(/\/+$/, "");
}
