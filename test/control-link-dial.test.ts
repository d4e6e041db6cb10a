/**
 * A replica's or proxy's link to the controller gives up a dial that does not
 * connect and dials again. The listener here never completes a connection: its
 * accept queue (backlog 0) is already full, so the kernel drops every further
 * SYN and, left alone, the dial would hang for about two minutes — what kept
 * replicas from a restarted Swarm controller for that long. Needs python3 (to
 * hold a listener that never accepts; Bun's listeners always accept).
 */
import { spawn, spawnSync } from "node:child_process";
import { createInterface } from "node:readline";
import { describe, expect, it } from "vitest";
import { ClusterToken } from "../src/config/cluster-token.ts";
import { ControllerLink, DIAL_TIMEOUT_MS } from "../src/cluster/control-link.ts";
import { waitFor } from "./harness.ts";

const HOLD = `
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(0)
filler = socket.create_connection(s.getsockname())
print(s.getsockname()[1], flush=True)
sys.stdin.read()
`;
const noPython = spawnSync("sh", ["-c", "command -v python3"]).status !== 0;
if (noPython) console.warn("\n*** test/control-link-dial.test.ts SKIPPED: python3 is not installed. ***\n");

describe.skipIf(noPython)("the control link's dial", () => {
  it("gives up a connect that never completes and says why (the link then dials again)", async () => {
    const holder = spawn("python3", ["-c", HOLD], { stdio: ["pipe", "pipe", "inherit"] });
    try {
      const port = await new Promise<string>((resolve) => createInterface({ input: holder.stdout! }).once("line", resolve));
      const failures: string[] = [];
      const link = new ControllerLink(`tcp://127.0.0.1:${port}`, { token: ClusterToken.from("a-cluster-secret-for-the-dial-test-0123456789") }, () => ({ t: "hello", role: "proxy" }), () => {}, () => {}, (m) => failures.push(m));
      try {
        const message = await waitFor(() => failures[0], "the dial to be given up", DIAL_TIMEOUT_MS * 4);
        expect(message).toBe(`the link to tcp://127.0.0.1:${port} did not connect within ${DIAL_TIMEOUT_MS} ms`);
        expect(link.connected).toBe(false);
      } finally {
        link.stop();
      }
    } finally {
      holder.kill();
    }
  });
});
