/**
 * A second network namespace for benchmarks: a veth pair between the root
 * namespace and a namespace made here, with addresses in a private /30 that
 * exists only on that pair. Nothing else on the host is touched; `remove()`
 * deletes the namespace (which takes the pair with it) and is safe to call
 * after a half-made setup.
 */
import { spawnSync } from "node:child_process";

export interface NetnsPair {
  ns: string;
  /** The root side's address (the caller). */
  rootIp: string;
  /** The namespace side's address (where peers listen). */
  nsIp: string;
  /** Prefix for a command to run inside the namespace. */
  wrap: string[];
  remove(): void;
}

function ip(args: string[]): { ok: boolean; err: string } {
  const r = spawnSync("ip", args, { encoding: "utf8" });
  return { ok: r.status === 0, err: (r.stderr || r.error?.message || "").trim() };
}

/**
 * Makes the namespace and its pair, or returns why it cannot (no `ip`, no
 * permission to create namespaces, the /30 already in use).
 */
export function makeNetnsPair(): NetnsPair | string {
  const tag = (process.pid % 100_000).toString();
  const ns = `sbbench-${tag}`;
  const rootIf = `sbb${tag}r`;
  const nsIf = `sbb${tag}n`;
  // 10.254.<n>.0/30: .1 root side, .2 namespace side.
  const net = `10.254.${process.pid % 250}`;
  const rootIp = `${net}.1`;
  const nsIp = `${net}.2`;
  const inUse = spawnSync("ip", ["-4", "-o", "addr", "show"], { encoding: "utf8" }).stdout ?? "";
  if (inUse.includes(` ${net}.`)) return `${net}.0/30 is already in use on this host`;
  const remove = () => {
    ip(["netns", "del", ns]);
    ip(["link", "del", rootIf]); // normally gone with the namespace
  };
  const steps: string[][] = [
    ["netns", "add", ns],
    ["link", "add", rootIf, "type", "veth", "peer", "name", nsIf, "netns", ns],
    ["addr", "add", `${rootIp}/30`, "dev", rootIf],
    ["link", "set", rootIf, "up"],
    ["-n", ns, "link", "set", "lo", "up"],
    ["-n", ns, "addr", "add", `${nsIp}/30`, "dev", nsIf],
    ["-n", ns, "link", "set", nsIf, "up"],
  ];
  for (const s of steps) {
    const r = ip(s);
    if (!r.ok) {
      remove();
      return `\`ip ${s.join(" ")}\` failed: ${r.err || "no message"}`;
    }
  }
  return { ns, rootIp, nsIp, wrap: ["ip", "netns", "exec", ns], remove };
}
