/**
 * A caller's data link to a replica gives up a dial that does not connect
 * (transport.ts DIAL_TIMEOUT_MS), and the calls queued on it, which never
 * left, go to another replica. Before: they waited for the kernel's SYN
 * back-off (about two minutes) — on a three-node Swarm a scale-up under load
 * had all 8 requests in flight time out after 30 s, the new replica's task
 * not yet reachable over the overlay. The replica that never answers the
 * dial is a listener whose accept queue is full (held-listener.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { ClusterToken } from "../src/config/cluster-token.ts";
import { DIAL_TIMEOUT_MS } from "../src/runtime/channel/transport.ts";
import { RemoteInvoker } from "../src/runtime/remote-invoker.ts";
import { BUN, ROOT } from "./harness.ts";
import { heldListener, noPython } from "./held-listener.ts";

const SECRET = "data-link-dial-test-secret-0123456789ab";

if (noPython) console.warn(`\n*** test/data-link-dial.test.ts SKIPPED: ${noPython}. ***\n`);

describe.skipIf(noPython !== null)("a data link whose dial never connects", () => {
  let peer: Subprocess<"ignore", "pipe", "pipe">;
  let address = "";
  let held: Awaited<ReturnType<typeof heldListener>>;

  beforeAll(async () => {
    held = await heldListener();
    peer = Bun.spawn([BUN, join(ROOT, "test/fixtures/tcp-peer.ts"), "A", "tcp://127.0.0.1:0"], {
      env: { ...process.env, SERVE_BIN_CLUSTER_TOKEN: SECRET, SERVE_BIN_CLUSTER_TOKEN_FILE: "" },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    let out = "";
    for await (const c of peer.stdout) {
      out += new TextDecoder().decode(c);
      const m = /tcp peer ready (\S+)/.exec(out);
      if (m) {
        address = m[1]!;
        break;
      }
    }
    if (!address) throw new Error(`the peer exited before it listened: ${out}`);
  });
  afterAll(async () => {
    held?.stop();
    peer?.kill("SIGTERM");
    await peer?.exited;
  });

  it("gives it up, and the calls waiting on it are answered by the other replica", async () => {
    const inv = new RemoteInvoker({}, { token: ClusterToken.from(SECRET) });
    try {
      const replicas = [
        { id: "A#0", socket: `tcp://127.0.0.1:${held.port}` },
        { id: "A#1", socket: address },
      ];
      inv.update({ version: 1, deployments: { A: { replicas, maxOngoingRequests: 1000, maxQueuedRequests: -1 } } });
      const started = performance.now();
      const calls = Array.from({ length: 16 }, async (_, i) => {
        const value = await inv.call("A", "echo", [i]);
        return { value, ms: performance.now() - started };
      });
      const answers = await Promise.all(calls);
      expect(answers.map((a) => a.value)).toEqual(Array.from({ length: 16 }, (_, i) => i));
      // Some were routed to the replica that never connected, waited out the dial, and went to the other.
      expect(Math.max(...answers.map((a) => a.ms))).toBeGreaterThanOrEqual(DIAL_TIMEOUT_MS);
    } finally {
      inv.close();
    }
  });
});
