import { parse, portOf, UsageError } from "./args.ts";

const USAGE = "serve-bin healthcheck [--port 8000] [--host 127.0.0.1]";
const TIMEOUT_MS = 3000;

/**
 * `serve-bin healthcheck`: exit 0 when the data plane's `/-/healthz` answers
 * 200 within 3 s, else 1 with the reason. For Docker's HEALTHCHECK, no curl needed.
 *
 * @example HEALTHCHECK CMD ["serve-bin", "healthcheck", "--port", "8000"]
 */
export async function healthcheckCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { port: { type: "string" }, host: { type: "string" } }, USAGE);
  if (positionals.length) throw new UsageError(`healthcheck takes no arguments, got "${positionals.join(" ")}"\nusage: ${USAGE}`);
  const port = portOf(values.port, "--port", 8000);
  if (port === 0) throw new UsageError(`--port 0 names no server; give the data plane's port\nusage: ${USAGE}`);
  const host = values.host ?? "127.0.0.1";
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}/-/healthz`;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(TIMEOUT_MS) });
    if (res.status === 200) return 0;
    const body = (await res.text()).trim();
    console.error(`serve-bin healthcheck: ${url} answered ${res.status}${body ? `: ${body}` : ""}`);
  } catch (e) {
    const err = e as Error & { code?: string };
    const why = err.name === "TimeoutError" ? `no answer within ${TIMEOUT_MS / 1000} s` : err.code === "ConnectionRefused" || err.code === "ECONNREFUSED" ? "connection refused" : err.message;
    console.error(`serve-bin healthcheck: ${url}: ${why}`);
  }
  return 1;
}
