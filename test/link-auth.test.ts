import { describe, expect, it } from "vitest";
import { ClusterToken } from "../src/config/cluster-token.ts";
import { DialerHandshake, ListenerHandshake, type Step } from "../src/runtime/channel/link-auth.ts";

const K1 = ClusterToken.from("first-cluster-secret-0123456789");
const K2 = ClusterToken.from("second-cluster-secret-987654321");

/** Runs both sides against each other in memory; returns each side's last step. */
function converse(dialerToken: ClusterToken, listenerToken: ClusterToken): { dialer: Step; listener: Step } {
  const d = new DialerHandshake(dialerToken);
  const l = new ListenerHandshake(listenerToken);
  let toListener: Uint8Array | undefined = d.hello();
  let dialer: Step = { t: "more" };
  let listener: Step = { t: "more" };
  for (let i = 0; i < 4 && toListener; i++) {
    listener = l.push(toListener);
    toListener = undefined;
    if (listener.t === "fail" || !listener.send) break;
    dialer = d.push(listener.send);
    if (dialer.t === "fail") break;
    toListener = dialer.send;
  }
  return { dialer, listener };
}

describe("the link handshake", () => {
  it("ends with both sides authenticated when they share the token", () => {
    const { dialer, listener } = converse(K1, K1);
    expect(dialer).toEqual({ t: "done", rest: new Uint8Array(0) });
    expect(listener.t).toBe("done");
  });

  it("fails on the dialer's side first when the tokens differ, so the dialer never sends a proof", () => {
    const { dialer, listener } = converse(K1, K2);
    expect(dialer).toEqual({ t: "fail", reason: "bad-proof", message: "the peer does not know this cluster's token" });
    expect(listener.t).toBe("more");
  });

  it("refuses the listener's own proof sent back to it (a reflection)", () => {
    const l = new ListenerHandshake(K1);
    const hello = new DialerHandshake(K2).hello(); // any nonce; the attacker does not know K1
    const challenge = l.push(hello);
    if (challenge.t !== "more" || !challenge.send) throw new Error("expected a challenge");
    const reflected = challenge.send.subarray(36, 68);
    expect(l.push(reflected)).toEqual({ t: "fail", reason: "bad-proof", message: "the peer's proof does not match this cluster's token" });
  });

  it("refuses a peer that does not open with the magic, and one that sends data before the handshake ends", () => {
    expect(new ListenerHandshake(K1).push(new Uint8Array([0x84, 0xa1, 0x74, 0xa4]))).toMatchObject({ t: "fail", reason: "bad-hello" });
    const l = new ListenerHandshake(K1);
    const hello = new DialerHandshake(K1).hello();
    expect(l.push(new Uint8Array([...hello, ...new Uint8Array(40)]))).toMatchObject({ t: "fail", reason: "bad-hello", message: "the peer sent data before the handshake ended" });
  });
});
