/**
 * A replica's or proxy's link to the controller gives up a dial that does not
 * connect and dials again. The listener here never completes a connection: its
 * accept queue (backlog 0) is already full, so the kernel drops every further
 * SYN and, left alone, the dial would hang for about two minutes — what kept
 * replicas from a restarted Swarm controller for that long. Needs python3 (to
 * hold a listener that never accepts; Bun's listeners always accept).
 */
import { describe, expect, it } from "vitest";
import { ClusterToken } from "../src/config/cluster-token.ts";
import { ControllerLink, DIAL_TIMEOUT_MS } from "../src/cluster/control-link.ts";
import { waitFor } from "./harness.ts";
import { heldListener, noPython } from "./held-listener.ts";

if (noPython) console.warn(`\n*** test/control-link-dial.test.ts SKIPPED: ${noPython}. ***\n`);

describe.skipIf(noPython !== null)("the control link's dial", () => {
  it("gives up a connect that never completes and says why (the link then dials again)", async () => {
    const { port, stop } = await heldListener();
    try {
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
      stop();
    }
  });
});
