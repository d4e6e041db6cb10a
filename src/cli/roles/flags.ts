import { parseAddress } from "../../runtime/channel/transport.ts";
import { UsageError } from "../args.ts";

/** A flag that must be a TCP link address (`tcp://host:port`). */
export function tcpFlag(v: string, flag: string, usage: string): string {
  try {
    if (parseAddress(v).kind === "tcp") return v;
  } catch {
    // the message below says what to give
  }
  throw new UsageError(`${flag} takes tcp://host:port, not "${v}"\nusage: ${usage}`);
}
