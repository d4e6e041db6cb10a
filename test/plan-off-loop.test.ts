/**
 * Graph modules are planned off the serving event loop (issue 17 item 8): a
 * module's top-level work runs in a short-lived `serve-bin plan` process, so
 * the proxy and the admin API keep answering while it runs; a module that
 * hangs is killed after limits.planTimeoutS, one that exits or throws is
 * refused with what went wrong, and no planning process is left behind.
 */
import { describe, expect, it } from "vitest";
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { childPids, gone, leftovers, postJSON, reap, runCli, startServer, stopCleanly, tempDir, waitFor, type RunningServer } from "./harness.ts";

/** Seconds of synchronous work at the top of the slow module. */
const BUSY_S = 5;

const QUICK = `import { deployment, InputNode } from "serve-bin";
export const echo = deployment(function echo(x: unknown) { return { echo: x }; });
export default echo.bind(new InputNode());
`;

/** A graph whose module spins BUSY_S seconds at top level, noting who ran it and when. */
const SLOW = `import { appendFileSync } from "node:fs";
import { deployment, InputNode } from "serve-bin";
const start = Date.now();
while (Date.now() - start < ${BUSY_S * 1000}) {}
appendFileSync(import.meta.dir + "/marks.txt", JSON.stringify({ pid: process.pid, start, end: Date.now() }) + "\\n");
export const slow = deployment(function slow(x: unknown) { return { slow: x }; });
export default slow.bind(new InputNode());
`;

/** Notes its pid in hang.pid, then spins for ever. */
const HANG = `import { writeFileSync } from "node:fs";
import { deployment } from "serve-bin";
writeFileSync(import.meta.dir + "/hang.pid", String(process.pid));
while (true) {}
export default deployment(function never() { return 1; }).bind();
`;

const EXITS = `import { deployment } from "serve-bin";
process.exit(3);
export default deployment(function gone() { return 1; }).bind();
`;

const THROWS = `import { deployment } from "serve-bin";
throw new Error("boom at top level");
export default deployment(function f() { return 1; }).bind();
`;

const SYNTAX = `import { deployment } from "serve-bin";
export default deployment(function f() { return 1; ).bind();
`;

interface Mark {
  pid: number;
  start: number;
  end: number;
}

const app = (name: string, file: string, routePrefix: string) => ({ name, importPath: `./${file}`, routePrefix });

async function put(server: RunningServer, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${server.adminUrl}/api/applications`, { method: "PUT", body: JSON.stringify(body), headers: { "content-type": "application/json" } });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function appNames(server: RunningServer): Promise<string[]> {
  return Object.keys(((await (await fetch(`${server.adminUrl}/api/applications`)).json()) as { applications: object }).applications);
}

/** Live `serve-bin plan` processes of modules whose path starts with `dir` (their command line names the module). */
function planners(dir: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const argv = readFileSync(`/proc/${d}/cmdline`, "utf8").split("\0");
      if (argv.includes("plan") && argv.some((a) => a.startsWith(dir)) && !gone(Number(d))) out.push(Number(d));
    } catch {}
  }
  return out;
}

/** Asks `url` again and again until `done()`; returns the longest time between two answers (any status), in ms. */
async function longestGap(url: string, done: () => boolean): Promise<{ gapMs: number; answers: number; first: number; last: number }> {
  const first = Date.now();
  let last = first;
  let gapMs = 0;
  let answers = 0;
  while (!done()) {
    await fetch(url);
    const now = Date.now();
    gapMs = Math.max(gapMs, now - last);
    last = now;
    answers++;
  }
  return { gapMs, answers, first, last };
}

async function startQuick(dir: string, opts: { compiled?: boolean } = {}): Promise<RunningServer> {
  writeFileSync(join(dir, "quick.ts"), QUICK);
  return startServer("quick.ts", { cwd: dir, ...opts });
}

const quickApp = app("quick", "quick.ts", "/");

describe("a graph module with slow top-level code", () => {
  it("is imported in a planning process: the data plane and the admin API keep answering throughout", async () => {
    await using dir = tempDir("sb-plan-slow-");
    writeFileSync(join(dir.path, "slow.ts"), SLOW);
    const server = await startQuick(dir.path);
    try {
      let putDone = false;
      const putting = put(server, { applications: [{ ...quickApp, name: "default" }, app("slow", "slow.ts", "/slow")] }).finally(() => (putDone = true));
      const [res, data, admin] = await Promise.all([putting, longestGap(`${server.url}/-/healthz`, () => putDone), longestGap(`${server.adminUrl}/api/applications`, () => putDone)]);
      expect(res.status).toBe(200);
      const marks = readFileSync(join(dir.path, "marks.txt"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Mark);
      // The server never ran the module itself; a planning process did (and then the replica).
      expect(marks.map((m) => m.pid)).not.toContain(server.proc.pid);
      const planned = marks[0]!;
      expect(planned.end - planned.start).toBeGreaterThanOrEqual(BUSY_S * 1000);
      // Both pollers were asking while the module spun, and never waited long for an answer.
      for (const p of [data, admin]) {
        expect(p.first).toBeLessThanOrEqual(planned.start);
        expect(p.last).toBeGreaterThanOrEqual(planned.end);
        expect(p.gapMs).toBeLessThan((BUSY_S * 1000) / 3);
      }
      if (process.env.SB_PLAN_FIGURES) console.log(JSON.stringify({ busyMs: planned.end - planned.start, data, admin }));
      const answer = await postJSON(`${server.url}/slow`, 7);
      expect(await answer.json()).toEqual({ slow: 7 });
      expect(planners(dir.path)).toEqual([]);
      // The same PUT again: the file is unchanged, so it is not imported again (no new mark).
      const lines = readFileSync(join(dir.path, "marks.txt"), "utf8");
      expect((await put(server, { applications: [{ ...quickApp, name: "default" }, app("slow", "slow.ts", "/slow")] })).status).toBe(200);
      expect(readFileSync(join(dir.path, "marks.txt"), "utf8")).toBe(lines);
    } finally {
      await stopCleanly(server);
    }
  });
});

describe("a graph module that never finishes importing", () => {
  it("is killed after limits.planTimeoutS: the PUT is refused with 422 naming the file and the bound, the planning process is gone, the other application serves", async () => {
    await using dir = tempDir("sb-plan-hang-");
    writeFileSync(join(dir.path, "hang.ts"), HANG);
    const server = await startQuick(dir.path);
    try {
      const seen = new Set<number>();
      let putDone = false;
      const putting = put(server, { applications: [{ ...quickApp, name: "default" }, app("hang", "hang.ts", "/hang")], limits: { planTimeoutS: 2 } }).finally(() => (putDone = true));
      const watching = (async () => {
        while (!putDone) {
          for (const pid of planners(join(dir.path, "hang.ts"))) seen.add(pid);
          await Bun.sleep(20);
        }
      })();
      const [res] = await Promise.all([putting, watching]);
      expect(res.status).toBe(422);
      expect(res.body.error).toBe("build");
      expect(res.body.message).toContain(join(dir.path, "hang.ts"));
      expect(res.body.message).toContain("limits.planTimeoutS (2 s)");
      // The planning process was seen running, and is gone by the time the PUT answers.
      expect(seen.size).toBe(1);
      expect([...seen].every(gone)).toBe(true);
      expect(planners(dir.path)).toEqual([]);
      expect(await appNames(server)).toEqual(["default"]);
      expect(await (await postJSON(server.url, 1)).json()).toEqual({ echo: 1 });
    } finally {
      await stopCleanly(server);
    }
  });

  it("ends with its server: SIGTERM while planning stops cleanly; a server killed with SIGKILL leaves no planning process", async () => {
    await using dir = tempDir("sb-plan-orphan-");
    writeFileSync(join(dir.path, "hang.ts"), HANG);
    const hang = join(dir.path, "hang.ts");
    for (const signal of ["SIGTERM", "SIGKILL"] as const) {
      const server = await startQuick(dir.path);
      const children = childPids(server.proc.pid);
      try {
        // Not awaited: the PUT waits on a module that never finishes (limits.planTimeoutS is a minute).
        void put(server, { applications: [{ ...quickApp, name: "default" }, app("hang", "hang.ts", "/hang")] }).catch(() => {});
        // The module's top-level code runs (so the process no longer hears its IPC channel close).
        const marker = join(dir.path, "hang.pid");
        const planner = await waitFor(() => (existsSync(marker) ? Number(readFileSync(marker, "utf8")) : null), "the module to start spinning");
        rmSync(marker);
        expect(planners(hang)).toEqual([planner]);
        if (signal === "SIGTERM") await stopCleanly(server);
        else await server.stop("SIGKILL");
        await waitFor(() => gone(planner), `the planning process to end after the server's ${signal}`);
        expect(planners(hang)).toEqual([]);
      } finally {
        reap(server.proc.pid, children);
        for (const f of leftovers(server.proc.pid)) rmSync(f, { recursive: true, force: true });
      }
    }
  });

  it("serve-bin run exits 2 with the file and the bound, leaving no planning process", async () => {
    await using dir = tempDir("sb-plan-hang-run-");
    writeFileSync(join(dir.path, "hang.ts"), HANG);
    writeFileSync(join(dir.path, "serve.yaml"), "applications:\n  - name: hang\n    importPath: ./hang.ts\nlimits:\n  planTimeoutS: 1\n");
    const r = await runCli(["run", "serve.yaml", "--port", "0", "--admin-port", "0"], { cwd: dir.path });
    expect(r.code).toBe(2);
    expect(r.stdout + r.stderr).toContain(`cannot import ${join(dir.path, "hang.ts")}: its top-level code was still running after limits.planTimeoutS (1 s)`);
    expect(planners(dir.path)).toEqual([]);
  });

  it("refuses a planTimeoutS past its bound", async () => {
    await using dir = tempDir("sb-plan-bound-");
    writeFileSync(join(dir.path, "quick.ts"), QUICK);
    writeFileSync(join(dir.path, "serve.yaml"), "applications:\n  - name: quick\n    importPath: ./quick.ts\nlimits:\n  planTimeoutS: 3601\n");
    const r = await runCli(["run", "serve.yaml", "--port", "0", "--admin-port", "0"], { cwd: dir.path });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("limits.planTimeoutS");
    expect(r.stderr).toContain("at most 3600");
  });
});

describe("graph modules that fail at top level", () => {
  it("are refused with what went wrong (exit, throw, syntax, wrong export) while the other application keeps serving", async () => {
    await using dir = tempDir("sb-plan-fail-");
    for (const [file, text] of Object.entries({ "exits.ts": EXITS, "throws.ts": THROWS, "syntax.ts": SYNTAX, "quick2.ts": QUICK })) writeFileSync(join(dir.path, file), text);
    const server = await startQuick(dir.path);
    try {
      const refused = async (second: { name: string; importPath: string; routePrefix: string }) => {
        const res = await put(server, { applications: [{ ...quickApp, name: "default" }, second] });
        expect(res.status).toBe(422);
        expect(res.body.error).toBe("build");
        expect(await (await postJSON(server.url, 2)).json()).toEqual({ echo: 2 });
        return String(res.body.message);
      };
      expect(await refused(app("exits", "exits.ts", "/e"))).toBe(
        `cannot import ${join(dir.path, "exits.ts")}: the module ended its planning process (exit code 3) before its graph was built; a graph module must not call process.exit or crash at top level`,
      );
      expect(await refused(app("throws", "throws.ts", "/t"))).toBe(`cannot import ${join(dir.path, "throws.ts")}: boom at top level`);
      expect(await refused(app("syntax", "syntax.ts", "/s"))).toMatch(new RegExp(`^cannot import ${join(dir.path, "syntax.ts")}: .+`));
      expect(await refused(app("noexport", "quick2.ts:nope", "/n"))).toBe(`${join(dir.path, "quick2.ts")} has no export "nope"; it exports: default, echo. Write graph.ts:<export>`);
      expect(await appNames(server)).toEqual(["default"]);
      expect(planners(dir.path)).toEqual([]);
    } finally {
      await stopCleanly(server);
    }
  });
});

describe("the compiled binary", () => {
  it("plans in its own planning process too: serves a graph, refuses one that exits", async () => {
    await using dir = tempDir("sb-plan-bin-");
    writeFileSync(join(dir.path, "exits.ts"), EXITS);
    const server = await startQuick(dir.path, { compiled: true });
    try {
      expect(await (await postJSON(server.url, 3)).json()).toEqual({ echo: 3 });
      const res = await put(server, { applications: [{ ...quickApp, name: "default" }, app("exits", "exits.ts", "/e")] });
      expect(res.status).toBe(422);
      expect(res.body.message).toContain("(exit code 3)");
      expect(planners(dir.path)).toEqual([]);
    } finally {
      await stopCleanly(server);
    }
  });
});

describe("serve-bin plan by hand", () => {
  it("exits 2 saying it is the server's planning process, instead of waiting for ever for a request", async () => {
    const r = await runCli(["plan", "graph.ts"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("serve-bin graph <graph.ts[:export]>");
  });
});
