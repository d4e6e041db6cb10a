/**
 * Colocated deployments (`colocate: true`): they run inside their caller's
 * process, with the same graph, the same config and the same answers as when
 * they have replicas of their own. Real servers, real replica processes.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { postJSON, ROOT, runCli, startServer, waitFor, type RunningServer } from "./harness.ts";

const DIR = join(ROOT, "test/fixtures/colocate");

interface Answer {
  text: string;
  pid: number;
  modelPid: number;
  prePid: number;
  driverPid: number;
  atIsDate: boolean;
}

async function ask(server: RunningServer, text: string): Promise<Answer> {
  const res = await fetch(server.url, { method: "POST", body: text });
  expect(res.status).toBe(200);
  return (await res.json()) as Answer;
}

async function status(server: RunningServer, app = "app") {
  const s = (await (await fetch(`${server.adminUrl}/api/applications`)).json()) as {
    applications: Record<string, { status: string; deployments: Record<string, { status: string; replicas: { pid: number }[] }> }>;
  };
  return s.applications[app]!;
}

function patch(server: RunningServer, deployment: string, body: unknown): Promise<Response> {
  return fetch(`${server.adminUrl}/api/applications/app/deployments/${deployment}`, { method: "PATCH", body: JSON.stringify(body), headers: { "content-type": "application/json" } });
}

describe("colocate: true", () => {
  let colocated: RunningServer;
  let separate: RunningServer;
  beforeAll(async () => {
    [colocated, separate] = await Promise.all([startServer(join(DIR, "colocated.yaml")), startServer(join(DIR, "separate.yaml"))]);
  });
  afterAll(async () => {
    expect(await colocated?.stop()).toBe(0);
    expect(await separate?.stop()).toBe(0);
  });

  it("runs Pre and Post inside the Driver's process, Model in its own, and answers as the same graph with its own replicas", async () => {
    const a = await ask(colocated, "abc");
    const b = await ask(separate, "abc");
    expect(a.text).toBe("Q-ABC!");
    expect(a.atIsDate).toBe(true); // values still cross the wire codec: a Date stays a Date
    const { pid: _1, modelPid: _2, prePid: _3, driverPid: _4, ...sameA } = a;
    const { pid: _5, modelPid: _6, prePid: _7, driverPid: _8, ...sameB } = b;
    expect(sameA).toEqual(sameB);
    expect(a.prePid).toBe(a.driverPid);
    expect(a.pid).toBe(a.driverPid);
    expect(a.modelPid).not.toBe(a.driverPid);
    // Without colocation every step has a process of its own.
    expect(new Set([b.prePid, b.pid, b.modelPid, b.driverPid]).size).toBe(4);
  });

  it("streams a colocated async generator's chunks in the caller's process", async () => {
    const read = async (server: RunningServer) => {
      const res = await fetch(`${server.url}/words`, { method: "POST", body: "one two three" });
      expect(res.status).toBe(200);
      return (await res.json()) as { words: string[]; pids: number[]; driverPid: number };
    };
    const [a, b] = await Promise.all([read(colocated), read(separate)]);
    expect(a.words).toEqual(["one", "two", "three"]);
    expect(b.words).toEqual(a.words);
    expect(a.pids).toEqual([a.driverPid]);
    expect(b.pids).not.toContain(b.driverPid);
  });

  it("starts no replica for a colocated deployment and shows it HEALTHY with none", async () => {
    const app = await status(colocated);
    expect(app.status).toBe("RUNNING");
    expect(app.deployments.Pre).toMatchObject({ status: "HEALTHY", replicas: [] });
    expect(app.deployments.Post).toMatchObject({ status: "HEALTHY", replicas: [] });
    expect(app.deployments.Words).toMatchObject({ status: "HEALTHY", replicas: [] });
    expect(app.deployments.Model!.replicas).toHaveLength(1);
  });

  it("applies a PATCH of a colocated deployment's userConfig by replacing its callers", async () => {
    const before = await ask(colocated, "x");
    const res = await patch(colocated, "Pre", { userConfig: { prefix: "r-" } });
    expect(res.status).toBe(200);
    const after = await waitFor(async () => {
      const a = await ask(colocated, "x");
      return a.text === "R-X!" ? a : null;
    }, "the new userConfig to serve");
    expect(after.driverPid).not.toBe(before.driverPid);
    expect(after.prePid).toBe(after.driverPid);
  });

  it("refuses to colocate the ingress with 422, saying why, and changes nothing", async () => {
    const before = await ask(colocated, "y");
    const res = await patch(colocated, "Driver", { colocate: true });
    expect(res.status).toBe(422);
    const body = (await res.json()) as { error: string; message: string };
    expect(body.message).toContain("the ingress");
    expect(body.message).toContain("cannot be colocated");
    expect((await ask(colocated, "y")).driverPid).toBe(before.driverPid);
  });

  it("moves a deployment out of its callers' processes with a live PATCH of colocate, answering the same", async () => {
    const before = await ask(colocated, "z");
    const res = await patch(colocated, "Post", { colocate: false });
    expect(res.status).toBe(200);
    const app = await waitFor(async () => {
      const a = await status(colocated);
      return a.status === "RUNNING" && a.deployments.Post!.replicas.length === 1 ? a : null;
    }, "Post to have a replica of its own");
    const after = await ask(colocated, "z");
    expect(after.text).toBe(before.text);
    expect(after.pid).toBe(app.deployments.Post!.replicas[0]!.pid);
    expect(after.pid).not.toBe(after.driverPid);
    expect(after.prePid).toBe(after.driverPid); // Pre stays colocated
  });

  it("refuses a colocate that is not a boolean with 422", async () => {
    const res = await patch(colocated, "Pre", { colocate: "yes" });
    expect(res.status).toBe(422);
    expect(JSON.stringify(await res.json())).toContain("colocate is true or false");
  });
});

describe("colocate set in code", () => {
  it("runs the deployment in its caller's process as the config option does", async () => {
    const server = await startServer(join(DIR, "in-code.ts"));
    try {
      const a = await ask(server, "abc");
      expect(a.text).toBe("ABC!");
      expect(a.prePid).toBe(a.driverPid);
      expect(a.pid).not.toBe(a.driverPid); // Post is not colocated here
      expect((await status(server, "default")).deployments.Pre).toMatchObject({ status: "HEALTHY", replicas: [] });
    } finally {
      expect(await server.stop()).toBe(0);
    }
  });
});

describe("a handle's timeoutS to a colocated deployment", () => {
  it("answers the same 504 as across processes, and in time a fast call as before", async () => {
    const [here, apart] = await Promise.all([
      startServer(join(DIR, "timeout.yaml"), { args: ["--app-dir", join(ROOT, "test/fixtures")] }),
      startServer(join(ROOT, "test/fixtures/handle-timeout.ts")),
    ]);
    try {
      expect((await status(here)).deployments.slowEcho).toMatchObject({ replicas: [] });
      const answer = async (server: RunningServer, sleepS: number) => {
        const res = await postJSON(server.url, sleepS);
        return { status: res.status, body: await res.text() };
      };
      const [fast, slow] = [await answer(here, 0.05), await answer(here, 2.5)];
      expect(fast).toEqual({ status: 200, body: "slept 0.05 s" });
      expect(slow.status).toBe(504);
      expect(JSON.parse(slow.body)).toMatchObject({ error: "timeout", deployment: "slowEcho" });
      expect(slow).toEqual(await answer(apart, 2.5));
    } finally {
      expect(await here.stop()).toBe(0);
      expect(await apart.stop()).toBe(0);
    }
  });
});

describe("a handle's timeoutS to a colocated stream", () => {
  it("bounds the whole stream as across processes: a short one completes, a long one ends with the same timeout", async () => {
    const [here, apart] = await Promise.all([startServer(join(DIR, "stream-timeout.yaml")), startServer(join(DIR, "stream-timeout.ts"))]);
    try {
      expect((await status(here)).deployments.Ticker).toMatchObject({ replicas: [] });
      const read = async (server: RunningServer, n: number) => (await (await fetch(server.url, { method: "POST", body: String(n) })).json()) as Record<string, unknown>;
      expect((await read(here, 2)).got).toEqual([0, 1]);
      const long = await read(here, 30);
      expect(long).toMatchObject({ error: "timeout", gotSome: true });
      expect(long).toEqual(await read(apart, 30));
    } finally {
      expect(await here.stop()).toBe(0);
      expect(await apart.stop()).toBe(0);
    }
  });
});

describe("colocate on the ingress at start", () => {
  it("refuses to start, saying what to fix", async () => {
    const r = await runCli(["run", join(DIR, "ingress.yaml"), "--port", "0", "--admin-port", "0"]);
    expect(r.code).toBe(2);
    expect(r.stderr + r.stdout).toContain("cannot be colocated");
  });
});
