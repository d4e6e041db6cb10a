/**
 * Faults against real replica processes: user exceptions, a replica killed
 * mid-request, timeouts, start-up failures, a full queue behind the driver,
 * SIGTERM with requests in flight, and a killed server.
 */
import { describe, expect, it } from "vitest";
import { copyFileSync, existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect } from "node:net";
import { CLIENT_WATCH_MS } from "../src/http/proxy.ts";
import { ROOT, alive, childPids, cliCommand, leftovers, postJSON, startServer, tempDir, waitFor, type RunningServer, gone, reap, replicasOf, stopCleanly } from "./harness.ts";


const FIXTURES = join(ROOT, "test/fixtures");
const fixture = (name: string) => join(FIXTURES, name);

interface Status {
  applications: Record<string, { status: string; message: string; deployments: Record<string, { status: string; replicas: { id: string; pid: number; state: string; restarts: number }[] }> }>;
}

async function status(server: RunningServer): Promise<Status> {
  const res = await fetch(`${server.adminUrl}/api/applications`);
  expect(res.status).toBe(200);
  return (await res.json()) as Status;
}

async function replicasOfDeployment(server: RunningServer, deployment: string, app = "default") {
  return (await status(server)).applications[app]!.deployments[deployment]!.replicas;
}

/** Runs `serve-bin run <target>` expecting it to give up; returns its pid, exit code and output. */
async function runUntilExit(target: string, timeoutMs = 30_000): Promise<{ pid: number; code: number; output: string }> {
  const proc = Bun.spawn([...cliCommand(), "run", target, "--port", "0", "--admin-port", "0"], { cwd: ROOT, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => proc.kill("SIGKILL"), timeoutMs);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { pid: proc.pid, code, output: stdout + stderr };
}

const slowBody = (tag: string, sleepS: number) => ({ tag, sleepS });

describe("a user exception", () => {
  it("answers 500 JSON naming the deployment, with message and stack, and the replica lives on", async () => {
    const server = await startServer(fixture("user-error.ts"));
    try {
      const first = await postJSON(server.url, "one");
      expect(first.status).toBe(200);
      const { pid } = (await first.json()) as { pid: number };
      expect(await replicasOfDeployment(server, "flaky")).toEqual([{ id: "flaky#0", pid, state: "RUNNING", restarts: 0 }]);

      const res = await postJSON(server.url, "boom");
      expect(res.status).toBe(500);
      expect(res.headers.get("content-type")).toMatch(/^application\/json/);
      const body = (await res.json()) as Record<string, string>;
      expect(body).toEqual({ error: "user", message: 'cannot digest "boom"', deployment: "flaky", stack: expect.any(String) });
      expect(body.stack).toMatch(/^TypeError: cannot digest "boom"\n/);
      expect(body.stack).toContain("user-error.ts");

      const after = await postJSON(server.url, "two");
      expect({ status: after.status, body: await after.json() }).toEqual({ status: 200, body: { pid, x: "two" } });
      expect(await replicasOfDeployment(server, "flaky")).toEqual([{ id: "flaky#0", pid, state: "RUNNING", restarts: 0 }]);
    } finally {
      await stopCleanly(server);
    }
  });
});

describe("a replica killed with SIGKILL during a slow request", () => {
  it("fails that request with 503 at once, serves new ones, and restarts the replica under its id", async () => {
    await using marks = tempDir();
    const server = await startServer(fixture("slow.ts"), { env: { SB_MARKS: marks.path } });
    try {
      const slow = postJSON(server.url, slowBody("victim", 20));
      const victimPid = Number(await waitFor(() => existsSync(join(marks.path, "started-victim")) && readFileSync(join(marks.path, "started-victim"), "utf8"), "the slow call to start"));
      const before = await replicasOfDeployment(server, "sleeper");
      const victim = before.find((r) => r.pid === victimPid)!;
      expect(victim).toEqual({ id: expect.stringMatching(/^sleeper#[01]$/), pid: victimPid, state: "RUNNING", restarts: 0 });

      process.kill(victimPid, "SIGKILL");
      // 503 and not the 200 of a 20 s sleep: it failed at once instead of hanging (timing belongs to the benchmark).
      const res = await slow;
      expect(res.status).toBe(503);
      expect(await res.json()).toEqual({
        error: "unavailable",
        message: expect.stringMatching(new RegExp(`^replica ${victim.id}\\b.* of sleeper went away while handling the request; retry it$`)),
        deployment: "sleeper",
      });

      for (const tag of ["after-1", "after-2", "after-3"]) {
        const r = await postJSON(server.url, slowBody(tag, 0));
        expect({ status: r.status, body: await r.text() }).toEqual({ status: 200, body: expect.stringMatching(new RegExp(`^${tag} slept in \\d+$`)) });
      }
      const replaced = await waitFor(async () => {
        const rs = await replicasOfDeployment(server, "sleeper");
        const r = rs.find((x) => x.id === victim.id);
        return rs.length === 2 && r?.state === "RUNNING" ? r : undefined;
      }, "the killed replica to be restarted");
      expect(replaced).toEqual({ id: victim.id, pid: expect.any(Number), state: "RUNNING", restarts: 1 });
      expect(replaced.pid).not.toBe(victimPid);
      const other = (await replicasOfDeployment(server, "sleeper")).find((r) => r.id !== victim.id)!;
      expect(other.restarts).toBe(0);
    } finally {
      await stopCleanly(server);
    }
  });
});

describe("the ingress replica killed with SIGKILL during a slow request", () => {
  it("fails that request with 503 at once; a request sent meanwhile waits for the restarted ingress and succeeds", async () => {
    await using marks = tempDir();
    const server = await startServer(fixture("slow.ts"), { env: { SB_MARKS: marks.path } });
    try {
      const slow = postJSON(server.url, slowBody("in-ingress", 20));
      await waitFor(() => existsSync(join(marks.path, "started-in-ingress")), "the slow call to start");
      const [driver] = await replicasOfDeployment(server, "DAGDriver");
      process.kill(driver!.pid, "SIGKILL");
      const res = await slow;
      expect({ status: res.status, body: await res.json() }).toEqual({
        status: 503,
        body: { error: "unavailable", message: expect.stringMatching(/^replica DAGDriver#0\b.* of DAGDriver went away while handling the request; retry it$/), deployment: "DAGDriver" },
      });
      const next = await postJSON(server.url, slowBody("next", 0));
      expect({ status: next.status, body: await next.text() }).toEqual({ status: 200, body: expect.stringMatching(/^next slept in \d+$/) });
      const [restarted] = await replicasOfDeployment(server, "DAGDriver");
      expect(restarted).toEqual({ id: "DAGDriver#0", pid: expect.any(Number), state: "RUNNING", restarts: 1 });
      expect(restarted!.pid).not.toBe(driver!.pid);
    } finally {
      await stopCleanly(server);
    }
  });
});

// The same proxy runs in the main process and, with proxy.location "ingress", in the DAGDriver replica.
for (const location of ["main", "ingress"] as const) {
  /** The timeout fixture served with `proxy` settings, copied into `dir`. */
  const timeoutApp = (dir: string, proxy: string): string => {
    copyFileSync(fixture("timeout.ts"), join(dir, "timeout.ts"));
    writeFileSync(join(dir, "app.yaml"), `proxy: { location: ${location}${proxy} }\napplications:\n  - name: default\n    importPath: ./timeout.ts\n`);
    return join(dir, "app.yaml");
  };

  describe(`proxy.requestTimeoutS (proxy.location ${location})`, () => {
    it("answers 504 after the timeout and fires the user code's requestContext().signal", async () => {
      await using dir = tempDir();
      const server = await startServer(timeoutApp(dir.path, ", requestTimeoutS: 0.5"), { env: { SB_MARKS: dir.path } });
      try {
        const t0 = performance.now();
        const res = await postJSON(server.url, "late", { headers: { "content-type": "application/json", "x-request-id": "req-timeout-1" } });
        const seconds = (performance.now() - t0) / 1000;
        expect({ status: res.status, body: await res.json() }).toEqual({
          status: 504,
          body: { error: "timeout", message: "the request took longer than proxy.requestTimeoutS (0.5 s); raise it or make the graph faster" },
        });
        expect(seconds).toBeGreaterThanOrEqual(0.45); // not before the timeout; the 504 says it was the timeout
        const marker = join(dir.path, "aborted-late");
        await waitFor(() => existsSync(marker) && readFileSync(marker, "utf8").endsWith("}"), "the user code to see the abort", 5_000);
        expect(JSON.parse(readFileSync(marker, "utf8"))).toEqual({ tag: "late", requestId: "req-timeout-1", why: expect.stringMatching(/^aborted: /) });
      } finally {
        await stopCleanly(server);
      }
    });
  });

  describe(`a client that goes away (proxy.location ${location})`, () => {
    it("fires the user code's requestContext().signal", async () => {
      await using marks = tempDir();
      const server = await startServer(timeoutApp(marks.path, ""), { env: { SB_MARKS: marks.path } });
      try {
        const ctl = new AbortController();
        const pending = postJSON(server.url, "gone", { signal: ctl.signal, headers: { "content-type": "application/json", "x-request-id": "req-gone-1" } });
        pending.catch(() => {});
        await waitFor(() => existsSync(join(marks.path, "started-gone")), "the call to start");
        ctl.abort();
        await expect(pending).rejects.toThrow();
        const marker = join(marks.path, "aborted-gone");
        // Well before requestTimeoutS (60 s) and the fixture's own 20 s.
        await waitFor(() => existsSync(marker) && readFileSync(marker, "utf8").endsWith("}"), "the user code to see the abort", 5_000);
        expect(JSON.parse(readFileSync(marker, "utf8"))).toEqual({ tag: "gone", requestId: "req-gone-1", why: expect.stringMatching(/^aborted: /) });
      } finally {
        await stopCleanly(server);
      }
    });

    it(`fires it too for a client that leaves ${CLIENT_WATCH_MS} ms or less after sending, before the proxy looks at its connection`, async () => {
      await using marks = tempDir();
      const server = await startServer(timeoutApp(marks.path, ""), { env: { SB_MARKS: marks.path } });
      try {
        const { port } = new URL(server.url);
        const body = JSON.stringify("early");
        // The whole request in one write, then the connection dropped 5 ms later.
        const sock = connect(Number(port), "127.0.0.1", () => {
          sock.write(`POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nx-request-id: req-early-1\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
          setTimeout(() => sock.destroy(), 5);
        });
        sock.on("error", () => {});
        const marker = join(marks.path, "aborted-early");
        await waitFor(() => existsSync(marker) && readFileSync(marker, "utf8").endsWith("}"), "the user code to see the abort", 5_000);
        expect(JSON.parse(readFileSync(marker, "utf8"))).toEqual({ tag: "early", requestId: "req-early-1", why: expect.stringMatching(/^aborted: /) });
      } finally {
        await stopCleanly(server);
      }
    });
  });
}

describe("a handle's own timeoutS", () => {
  it("answers 504 naming the deployment that was too slow, not 499 or 500", async () => {
    const server = await startServer(fixture("handle-timeout.ts"));
    try {
      const fast = await postJSON(server.url, 0.05);
      expect({ status: fast.status, body: await fast.text() }).toEqual({ status: 200, body: "slept 0.05 s" });
      // The call sleeps 2.5 s, past the handle's timeoutS (1 s): a 504, not the 200 it would end with.
      const res = await postJSON(server.url, 2.5);
      expect({ status: res.status, body: await res.json() }).toEqual({
        status: 504,
        body: {
          error: "timeout",
          message: "the call to slowEcho took longer than its handle's timeoutS; raise timeoutS in handle.options() or make slowEcho faster",
          deployment: "slowEcho",
        },
      });
    } finally {
      await stopCleanly(server);
    }
  });
});

describe("start-up failures", () => {
  it("exits non-zero and prints the user's error when a constructor throws", async () => {
    const { pid, code, output } = await runUntilExit(fixture("ctor-throws.ts"));
    try {
      expect([1, 2]).toContain(code);
      expect(output).toContain("weights not found at /models/missing.onnx; mount them or fix userConfig");
      expect(output).toContain("Loader");
      await waitFor(() => replicasOf(pid).length === 0, "the replicas to exit", 5_000);
      expect(leftovers(pid)).toEqual([]);
    } finally {
      reap(pid, []);
    }
  });

  it("refuses replicas whose rebuilt graph hashes differently (a random init arg) and exits non-zero", async () => {
    const { pid, code, output } = await runUntilExit(fixture("random-init.ts"));
    try {
      expect([1, 2]).toContain(code);
      expect(output).toContain("the graph rebuilt in this replica differs from the one the server planned");
      expect(output).toContain("no random values, clocks or environment-dependent values in bind()");
      await waitFor(() => replicasOf(pid).length === 0, "the replicas to exit", 5_000);
      expect(leftovers(pid)).toEqual([]);
    } finally {
      reap(pid, []);
    }
  });
});

describe("a deployment with maxOngoingRequests 1 and maxQueuedRequests 0 behind the driver", () => {
  it("turns the second concurrent request away with 503, not 500", async () => {
    const server = await startServer(fixture("queue-full.ts"));
    try {
      const answers = await Promise.all([postJSON(server.url, 1), postJSON(server.url, 1)].map(async (p) => {
        const r = await p;
        return { status: r.status, body: await r.text() };
      }));
      answers.sort((a, b) => a.status - b.status);
      expect(answers[0]).toEqual({ status: 200, body: "done" });
      expect({ status: answers[1]!.status, body: JSON.parse(answers[1]!.body) }).toEqual({
        status: 503,
        body: { error: "unavailable", message: "single is at capacity and its queue is full (maxQueuedRequests 0); retry later or add replicas", deployment: "single" },
      });
    } finally {
      await stopCleanly(server);
    }
  });
});

describe("SIGTERM while requests are in flight", () => {
  it("lets them finish with 200, then exits 0 leaving nothing behind", async () => {
    await using marks = tempDir();
    const server = await startServer(fixture("slow.ts"), { env: { SB_MARKS: marks.path } });
    const pid = server.proc.pid;
    const children = childPids(pid);
    try {
      const tags = ["t1", "t2", "t3"];
      const inFlight = tags.map((tag) => postJSON(server.url, slowBody(tag, 1.5)).then(async (r) => ({ status: r.status, body: await r.text() })));
      await waitFor(() => tags.every((t) => existsSync(join(marks.path, `started-${t}`))), "every request to reach the sleeper");
      const exited = server.stop("SIGTERM");
      const answers = await Promise.all(inFlight);
      expect(answers).toEqual(tags.map((tag) => ({ status: 200, body: expect.stringMatching(new RegExp(`^${tag} slept in \\d+$`)) })));
      expect(await exited).toBe(0);
      await waitFor(() => children.every(gone) && replicasOf(pid).length === 0, "every replica to exit", 5_000);
      expect(leftovers(pid)).toEqual([]);
      expect(server.output()).toContain("serve-bin: stopped");
    } finally {
      reap(pid, children);
    }
  });
});

describe("SIGTERM during start-up", () => {
  it("stops at once, before the slow replica is ready, and exits 0 leaving nothing behind", async () => {
    const server = await startServer(fixture("slow-start.ts"), { waitReady: false });
    const pid = server.proc.pid;
    try {
      await waitFor(() => childPids(pid).length === 2 && server.output().includes("Loader#0 starting"), "the replicas to be starting");
      const children = childPids(pid);
      expect(await Promise.race([server.stop("SIGTERM"), Bun.sleep(10_000).then(() => "still running 10 s after SIGTERM")])).toBe(0);
      // The model takes 3 s to load: the stop did not wait for it, or the server would have printed "ready in".
      expect(server.output()).not.toContain("ready in");
      await waitFor(() => children.every(gone) && replicasOf(pid).length === 0, "every replica to exit", 5_000);
      expect(leftovers(pid)).toEqual([]);
    } finally {
      reap(pid, []);
    }
  });
});

describe("SIGTERM with a request that outlasts proxy.shutdownTimeoutS", () => {
  it("answers it 503 and exits 0 within shutdownTimeoutS, leaving nothing behind", async () => {
    await using dir = tempDir();
    copyFileSync(fixture("slow.ts"), join(dir.path, "slow.ts"));
    writeFileSync(join(dir.path, "app.yaml"), "proxy: { shutdownTimeoutS: 1 }\napplications:\n  - name: default\n    importPath: ./slow.ts\n");
    const server = await startServer(join(dir.path, "app.yaml"), { env: { SB_MARKS: dir.path } });
    const pid = server.proc.pid;
    const children = childPids(pid);
    try {
      const pending = postJSON(server.url, slowBody("long", 30)).then(async (r) => ({ status: r.status, body: (await r.json()) as Record<string, string> }));
      await waitFor(() => existsSync(join(dir.path, "started-long")), "the request to reach the sleeper");
      const exited = server.stop("SIGTERM");
      const answer = await pending;
      expect(answer.status).toBe(503);
      expect(answer.body.error).toBe("unavailable");
      // The request would sleep 30 s: its 503 and the exit came from shutdownTimeoutS, not from its end.
      expect(await exited).toBe(0);
      await waitFor(() => children.every(gone) && replicasOf(pid).length === 0, "every replica to exit", 5_000);
      expect(leftovers(pid)).toEqual([]);
    } finally {
      reap(pid, children);
    }
  });
});

describe("a scale-down while the replica it removes has a request in flight", () => {
  it("lets that request finish with 200 before the replica stops", async () => {
    await using marks = tempDir();
    const server = await startServer(fixture("slow.ts"), { env: { SB_MARKS: marks.path } });
    try {
      // Two calls at once: power of two choices over two replicas puts one on each.
      const tags = ["s1", "s2"];
      const inFlight = tags.map((tag) => postJSON(server.url, slowBody(tag, 1)).then(async (r) => ({ status: r.status, body: await r.text() })));
      await waitFor(() => tags.every((t) => existsSync(join(marks.path, `started-${t}`))), "both calls to reach the sleepers");
      const pids = tags.map((t) => Number(readFileSync(join(marks.path, `started-${t}`), "utf8")));
      expect(new Set(pids).size).toBe(2);
      const patch = await fetch(`${server.adminUrl}/api/applications/default/deployments/sleeper`, {
        method: "PATCH",
        body: JSON.stringify({ numReplicas: 1 }),
        headers: { "content-type": "application/json" },
      });
      expect(patch.status).toBe(200);
      await patch.arrayBuffer();
      expect(await Promise.all(inFlight)).toEqual(tags.map((tag, i) => ({ status: 200, body: `${tag} slept in ${pids[i]}` })));
      await waitFor(async () => (await replicasOfDeployment(server, "sleeper")).length === 1, "the removed replica to stop");
    } finally {
      await stopCleanly(server);
    }
  });
});

describe("an un-awaited DeploymentResponse", () => {
  it("passed to another .remote() is resolved across processes; one that fails unawaited harms nothing", async () => {
    const server = await startServer(fixture("unawaited.ts"));
    try {
      const res = await postJSON(server.url, 5);
      expect({ status: res.status, body: await res.text() }).toEqual({ status: 200, body: "5 doubled twice is 20" });

      const [chain] = await replicasOfDeployment(server, "Chain");
      for (const x of ["a", "b"]) {
        const forgot = await postJSON(server.url, x);
        expect({ status: forgot.status, body: await forgot.text() }).toEqual({ status: 200, body: `fired and forgot ${x}; pid ${chain!.pid}` });
      }
      expect(server.output()).not.toMatch(/unhandled/i);
      expect(await replicasOfDeployment(server, "Chain")).toEqual([{ id: "Chain#0", pid: chain!.pid, state: "RUNNING", restarts: 0 }]);
    } finally {
      await stopCleanly(server);
    }
  });
});

describe("kill -9 of the server", () => {
  it("ends its replicas within about a second, and the next start sweeps its files", async () => {
    await using marks = tempDir();
    const server = await startServer(fixture("slow.ts"), { env: { SB_MARKS: marks.path } });
    const pid = server.proc.pid;
    const children = childPids(pid);
    try {
      expect(children.length).toBe(4);
      expect(leftovers(pid).length).toBeGreaterThan(0);
      await server.stop("SIGKILL");
      // They would serve for ever (the sleeper is idle): only the lost control channel ends them.
      await waitFor(() => children.every(gone), "the orphaned replicas to exit", 20_000, 10);
      expect(replicasOf(pid)).toEqual([]);
    } finally {
      reap(pid, children);
    }
    const next = await startServer(fixture("user-error.ts"));
    try {
      expect(leftovers(pid)).toEqual([]);
    } finally {
      await stopCleanly(next);
    }
  });
});
