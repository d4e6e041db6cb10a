/**
 * The benchmark harness keeps working: a quick run of one in-process hop
 * scenario and one HTTP scenario writes complete, well-formed result files
 * and a RESULTS.md, and leaves nothing running. Speed is never asserted.
 */
import { describe, expect, it } from "vitest";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { checkResult, type ScenarioResult } from "../bench/lib/results.ts";
import { BUN, ROOT, tempDir } from "./harness.ts";

const SCENARIOS = ["hop", "http-noop"];

describe("bun bench/main.ts --quick", () => {
  it("writes a complete result file per scenario and a RESULTS.md table, and stops every process it started", async () => {
    await using dir = tempDir("sb-bench-test-");
    const proc = Bun.spawn([BUN, "bench/main.ts", "--quick", "--out", dir.path, ...SCENARIOS], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    expect({ code, stderr: code === 0 ? "" : `${stdout}\n${stderr}` }).toEqual({ code: 0, stderr: "" });

    for (const name of SCENARIOS) {
      const file = join(dir.path, `${name}.json`);
      expect(existsSync(file)).toBe(true);
      const result = JSON.parse(readFileSync(file, "utf8")) as ScenarioResult;
      expect(checkResult(result, name)).toEqual([]);
      expect(result.quick).toBe(true);
      expect(result.notes.filter((n) => n.startsWith("left behind"))).toEqual([]);
    }
    const hop = JSON.parse(readFileSync(join(dir.path, "hop.json"), "utf8")) as ScenarioResult;
    expect(hop.rows.find((r) => r.id === "hop.median")).toMatchObject({ unit: "µs", target: expect.any(String), baseline: { value: expect.any(Number) } });
    const http = JSON.parse(readFileSync(join(dir.path, "http-noop.json"), "utf8")) as ScenarioResult;
    expect(http.generator).toEqual(expect.any(String));
    expect(http.rows.map((r) => r.id)).toEqual(["http-noop.throughput", "http-noop.p99", "http-noop.median", "http-noop.ingress-throughput", "http-noop.ingress-vs-main", "http-noop.ingress-p99", "http-noop.ingress2-throughput", "http-noop.ingress2-p99", "http-noop.concurrent-throughput", "http-noop.concurrent-p99", "http-noop.ingress-concurrent-throughput", "http-noop.ingress-concurrent-p99", "http-noop.ingress-stw-throughput", "http-noop.ingress-stw-p99", "http-noop.floor-throughput", "http-noop.floor-p99", "http-noop.floor3-throughput", "http-noop.floor3-p99", "http-noop.vs-floor3", "http-noop.ingress-vs-floor"]);

    const md = readFileSync(join(dir.path, "RESULTS.md"), "utf8");
    for (const row of [...hop.rows, ...http.rows]) expect(md).toContain(`| ${row.id.split(".")[0]} | ${row.figure}`);
    expect(md).toContain("## Ray Serve's published figures for comparable work");
  }, 180_000);

  it("refuses an unknown scenario with exit code 2 and the list of scenarios", async () => {
    const proc = Bun.spawn([BUN, "bench/main.ts", "no-such-scenario"], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
    const [stderr, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
    expect(code).toBe(2);
    expect(stderr).toContain("unknown scenario \"no-such-scenario\"");
    expect(stderr).toContain("hop, http-noop, tutorial");
  });
});

describe("checkResult", () => {
  it("reports what is missing from a malformed result", () => {
    expect(checkResult({ scenario: "hop", rows: [] }, "hop")).toContain("no rows");
    expect(checkResult(null)).toEqual(["not an object"]);
  });
});
