/**
 * memory: RSS and RssAnon (from /proc/<pid>/status) of the compiled binary's
 * main process, of an idle replica and of a busy replica, serving the no-op
 * graph (proxy → DAGDriver → noop). Idle: after start-up and a few requests,
 * at rest. Busy: the peak sampled every 100 ms under wrk at 64 connections.
 * Baseline: an idle bare Bun.serve process.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { BINARY, BUN, FIXTURES, LIB } from "./lib/paths.ts";
import { loadGenerator } from "./lib/load.ts";
import { rssOf, sleep, type Rss } from "./lib/procs.ts";
import { row, type Scenario } from "./lib/scenario.ts";
import { postJSON, startServeBin } from "./lib/server.ts";
import { round } from "./lib/stats.ts";

const r1 = (m: Rss | null) => m && { rss: round(m.rss, 1), rssAnon: round(m.rssAnon, 1), rssFile: round(m.rssFile, 1) };
const peak = (a: Rss | null, b: Rss | null): Rss | null => (!a ? b : !b ? a : { rss: Math.max(a.rss, b.rss), rssAnon: Math.max(a.rssAnon, b.rssAnon), rssFile: Math.max(a.rssFile, b.rssFile) });

export const memory: Scenario = {
  name: "memory",
  title: "resident memory of the main process and replicas",
  async run({ quick, procs, log }) {
    const compiled = existsSync(BINARY);
    const gen = await loadGenerator(procs, log);
    const bare = procs.spawn("bare Bun.serve", [BUN, join(LIB, "bare-server.ts")]);
    const bareUrl = (await bare.waitFor(/listening on (http:\/\/\S+)/, 10_000))[1]!;
    await postJSON(bareUrl, {});
    const server = await startServeBin(procs, join(FIXTURES, "noop.ts"), { compiled });
    try {
      const pids = await server.replicaPids();
      const driver = pids.DAGDriver![0]!;
      const noop = pids.noop![0]!;
      for (let i = 0; i < 20; i++) await postJSON(server.url, { i });
      await sleep(quick ? 500 : 2000);
      Bun.gc(true);
      const idle = { main: rssOf(server.pid), driver: rssOf(driver), noop: rssOf(noop), bare: rssOf(bare.pid) };
      log("memory: sampling under load");
      const busy: Record<"main" | "driver" | "noop", Rss | null> = { main: null, driver: null, noop: null };
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          busy.main = peak(busy.main, rssOf(server.pid));
          busy.driver = peak(busy.driver, rssOf(driver));
          busy.noop = peak(busy.noop, rssOf(noop));
          await sleep(100);
        }
      })();
      await gen.run({ url: server.url, body: JSON.stringify({ id: 7, text: "hello" }), connections: 64, durationS: quick ? 1 : 4 });
      sampling = false;
      await sampler;
      await sleep(quick ? 500 : 2000);
      const after = { main: rssOf(server.pid), driver: rssOf(driver), noop: rssOf(noop) };
      const idleReplica = idle.noop!;
      const busiest = busy.driver!.rssAnon >= busy.noop!.rssAnon ? { who: "DAGDriver", m: busy.driver! } : { who: "noop", m: busy.noop! };
      return {
        generator: gen.name,
        method: `${compiled ? "dist/serve-bin (compiled)" : "serve-bin from source (no compiled binary)"} serving bench/fixtures/noop.ts. RSS and RssAnon from /proc/<pid>/status; RssAnon excludes the executable's file-backed pages, which every replica shares. Idle: after 20 requests and ${quick ? 0.5 : 2} s at rest. Busy: peak of 100 ms samples under ${gen.name} at 64 connections for ${quick ? 1 : 4} s.`,
        rows: [
          row({
            id: "memory.idle-replica",
            figure: "idle replica (the no-op deployment), RssAnon",
            unit: "MB",
            value: idleReplica.rssAnon,
            baseline: { label: "idle bare Bun.serve process, RssAnon", value: idle.bare?.rssAnon ?? null },
            target: "RssAnon ≤ 25 MB",
            met: idleReplica.rssAnon <= 25,
            digits: 1,
          }),
          row({ id: "memory.idle-replica-rss", figure: "idle replica, RSS (with shared file pages)", unit: "MB", value: idleReplica.rss, baseline: { label: "idle bare Bun.serve, RSS", value: idle.bare?.rss ?? null }, digits: 1 }),
          row({ id: "memory.busy-replica", figure: `busy replica (${busiest.who}, peak under load), RssAnon`, unit: "MB", value: busiest.m.rssAnon, digits: 1 }),
          row({ id: "memory.main-idle", figure: "main process (controller, proxy, admin), idle, RssAnon", unit: "MB", value: idle.main!.rssAnon, digits: 1 }),
          row({ id: "memory.main-busy", figure: "main process, peak under load, RssAnon", unit: "MB", value: busy.main!.rssAnon, digits: 1 }),
          row({ id: "memory.main-after", figure: `main process, ${quick ? 0.5 : 2} s after the load, RssAnon`, unit: "MB", value: after.main!.rssAnon, digits: 1 }),
        ],
        series: {
          idleMiB: { main: r1(idle.main), DAGDriver: r1(idle.driver), noop: r1(idle.noop), bareBunServe: r1(idle.bare) },
          busyPeakMiB: { main: r1(busy.main), DAGDriver: r1(busy.driver), noop: r1(busy.noop) },
          afterLoadMiB: { main: r1(after.main), DAGDriver: r1(after.driver), noop: r1(after.noop) },
        },
        notes: ["MB here is MiB (1,048,576 bytes), as /proc reports kB of 1,024 bytes."],
      };
    } finally {
      await server.stop();
      await bare.stop();
    }
  },
};
