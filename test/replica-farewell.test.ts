/**
 * A draining replica's last word (src/runtime/replica/farewell.ts) and what
 * its callers do with it (ReplicaClient): calls a caller still waits for when
 * the replica says it drained never ran there, so they go to another replica
 * and none fails (a stream too); a connection with a call still running hears nothing; the
 * replica leaves once its callers hung up. Real unix sockets and the real
 * RemoteInvoker; the replica side is a listener of this process that holds
 * the calls it is sent unanswered (as a replica that never read them).
 */
import { afterEach, describe, expect, it } from "vitest";
import { join } from "node:path";
import type { Connection } from "../src/runtime/channel/connection.ts";
import type { DataMessage, RoutingTable } from "../src/runtime/channel/messages.ts";
import { listenLink, type LinkListener } from "../src/runtime/channel/transport.ts";
import { RemoteInvoker } from "../src/runtime/remote-invoker.ts";
import { Deadline, Farewell } from "../src/runtime/replica/farewell.ts";
import { tempDir, waitFor, type TempDir } from "./harness.ts";

/** A replica stand-in: `answer` says what it does with a call (reply now, or hold it). */
function replica(socket: string, answer: "ok" | "hold", idle: () => boolean = () => true) {
  const held: { conn: Connection; id: number }[] = [];
  const open = new Set<Connection>();
  const farewell = new Farewell(() => idle());
  const listener: LinkListener = listenLink(
    socket,
    {
      open: (c) => (open.add(c), farewell.opened(c)),
      message: (m: DataMessage, c) => {
        if (m.t !== "call") return;
        if (answer === "hold") held.push({ conn: c, id: m.id });
        else if (!m.s) c.send({ t: "ok", id: m.id, v: socket });
        else {
          c.send({ t: "chunk", id: m.id, v: socket });
          c.send({ t: "end", id: m.id });
        }
      },
      close: (c) => (open.delete(c), farewell.closed(c)),
    },
    {},
    {},
  );
  return { socket, held, open, farewell, listener };
}

const table = (version: number, sockets: string[]): RoutingTable => ({
  version,
  deployments: { Model: { replicas: sockets.map((s, i) => ({ id: `Model#${i}@${s}`, socket: s })), maxOngoingRequests: 100, maxQueuedRequests: -1 } },
});

describe("a draining replica's farewell", () => {
  let dir: TempDir;
  const closing: (() => void)[] = [];
  afterEach(async () => {
    for (const c of closing.splice(0)) c();
    await dir?.[Symbol.asyncDispose]();
  });

  it("sends the calls a caller still waits for to another replica, none failing, and leaves once its callers hung up", async () => {
    dir = tempDir("sb-farewell-");
    const a = replica(join(dir.path, "a.sock"), "hold");
    const b = replica(join(dir.path, "b.sock"), "ok");
    const invoker = new RemoteInvoker();
    closing.push(() => (invoker.close(), a.listener.stop(), b.listener.stop()));
    invoker.update(table(1, [a.socket]));
    // Calls reach the leaving replica before it drained (it never read them: they are held unanswered); one streams its answer.
    const calls = [1, 2, 3].map(() => invoker.call("Model", null, []));
    const streamed = (async () => {
      const chunks: unknown[] = [];
      for await (const c of invoker.stream("Model", null, [])) chunks.push(c);
      return chunks;
    })();
    await waitFor(() => a.held.length === 4, "the calls at the leaving replica");
    invoker.update(table(2, [a.socket, b.socket]));
    const deadline = new Deadline();
    deadline.within(60_000);
    let left = false;
    const leaving = a.farewell.leave(deadline).then(() => (left = true));
    // Every call is answered, by the replica that stays.
    expect(await Promise.all(calls)).toEqual([b.socket, b.socket, b.socket]);
    expect(await streamed).toEqual([b.socket]);
    // The caller hung up on hearing it; the replica leaves then, long before its deadline.
    await waitFor(() => left && a.open.size === 0, "the leaving replica's callers to hang up");
    await leaving;
    // A caller that connects afterwards (its snapshot still lists the replica) hears it at once: its call goes elsewhere too.
    const late = new RemoteInvoker();
    closing.push(() => late.close());
    late.update(table(1, [a.socket, b.socket]));
    expect(await Promise.all([1, 2, 3, 4, 5, 6].map(() => late.call("Model", null, [])))).toEqual(Array(6).fill(b.socket));
  });

  it("says nothing on a connection with a call still running: its caller learns of the loss when the connection closes", async () => {
    dir = tempDir("sb-farewell-");
    const a = replica(join(dir.path, "a.sock"), "hold", () => false);
    const b = replica(join(dir.path, "b.sock"), "ok");
    const invoker = new RemoteInvoker();
    closing.push(() => (invoker.close(), a.listener.stop(), b.listener.stop()));
    invoker.update(table(1, [a.socket]));
    const call = invoker.call("Model", null, []).then(
      (v) => ({ v }),
      (e: Error) => ({ e: e.message }),
    );
    await waitFor(() => a.held.length === 1, "the call at the leaving replica");
    invoker.update(table(2, [a.socket, b.socket]));
    const deadline = new Deadline();
    deadline.within(0); // the drain's grace period is over: the call may have run
    await a.farewell.leave(deadline);
    expect(a.open.size).toBe(1); // told nothing, the caller is still there
    for (const c of a.open) c.close();
    expect(await call).toEqual({ e: expect.stringContaining("went away while handling the request") });
  });

  it("brings a deadline forward, never back", async () => {
    const d = new Deadline();
    let reached = false;
    void d.reached.then(() => (reached = true));
    d.within(60_000);
    d.within(120_000); // later: ignored
    d.within(0);
    await d.reached;
    expect(reached).toBe(true);
  });
  it("fails the calls waiting on a replica the controller saw end at once (503), where one merely left waits for its answers", async () => {
    dir = tempDir("sb-gone-");
    // Both hold every call unanswered and keep their connections open: as a node cut off, whose links never close.
    const cut = replica(join(dir.path, "cut.sock"), "hold");
    const leaving = replica(join(dir.path, "leaving.sock"), "hold");
    const stays = replica(join(dir.path, "stays.sock"), "ok");
    const invoker = new RemoteInvoker();
    closing.push(() => (invoker.close(), cut.listener.stop(), leaving.listener.stop(), stays.listener.stop()));
    const route = (s: string) => ({ id: `Model#${s}@${s}`, socket: s });
    const at = (version: number, sockets: string[], gone?: string[]): RoutingTable => ({
      version,
      deployments: { Model: { replicas: sockets.map(route), maxOngoingRequests: 100, maxQueuedRequests: -1 } },
      ...(gone && { gone }),
    });
    invoker.update(at(1, [cut.socket]));
    const onCut = invoker.call("Model", null, []).then(
      () => "answered",
      (e: { code?: string; message?: string }) => `${e.code}: ${e.message}`,
    );
    await waitFor(() => cut.held.length === 1, "the call at the cut-off replica");
    invoker.update(at(2, [leaving.socket]));
    const onLeaving = invoker.call("Model", null, []).then(() => "answered", () => "failed");
    await waitFor(() => leaving.held.length === 1, "the call at the leaving replica");
    // The cut-off replica is named gone; the leaving one only drops out of the table.
    invoker.update(at(3, [stays.socket], [route(cut.socket).id]));
    expect(await onCut).toBe(`unavailable: replica ${route(cut.socket).id} of Model went away while handling the request; retry it`);
    invoker.update(at(4, [stays.socket], [route(cut.socket).id]));
    expect(await invoker.call("Model", null, [])).toBe(stays.socket);
    // A replica that left but did not end still owes its answer: its call is neither failed nor moved.
    const { held } = leaving;
    held[0]!.conn.send({ t: "ok", id: held[0]!.id, v: "late answer" });
    expect(await onLeaving).toBe("answered");
  });
});
