/**
 * tutorial: the seed tutorial graph over HTTP against the same graph's local
 * `execute` in this process (its 0.45 s critical path of sleeps). Each pair
 * starts both at once; the figure is HTTP latency − local latency per pair.
 * The same pairs run, staggered, for three more placements of the same graph:
 * its cheap steps colocated, proxy.location ingress, and both; and for the
 * floors of the two extreme shapes, hand-written (bench/lib/tutorial-floor.ts).
 */
import { join } from "node:path";
import { processesOf } from "./lib/http-compare.ts";
import { EXAMPLES, FIXTURES, ROOT } from "./lib/paths.ts";
import { row, type Scenario } from "./lib/scenario.ts";
import { startRawPeer } from "./lib/raw-client.ts";
import { startServeBin, type ServeBin } from "./lib/server.ts";
import { startTutorialFloors, type TutorialFloors } from "./lib/tutorial-floor.ts";
import { round, roundSummary, summarize } from "./lib/stats.ts";
import { WakeupMeter } from "./lib/wakeups.ts";

const INPUTS: [unknown[], string][] = [
  [["5", [1, 2], "sum"], "sum(['(1 * (5 + 1.5))', '(2 * (5 + 1.5))'])"],
  [["1", [0, 2], "max"], "max(['(1 * (1 + 1))', '(2 * (1 + 1))'])"],
];

/**
 * The placements measured, with the messages on a request's critical path that
 * reach a process idle for 50 ms or more (so it pays a cold wake-up):
 * as written, avgPreprocessor, the DAGDriver on its answer, the Combiner, the
 * Models, the Combiner on their answers, the DAGDriver on its answer, the main
 * process on the DAGDriver's answer; ingress removes the last; colocated keeps
 * the Models, the DAGDriver on their answers and the main process.
 */
const PLACEMENTS = [
  { key: "default", file: null, label: "as written (7 replica processes behind the main process)", coldWakes: 7 },
  { key: "colocated", file: "tutorial-colocated.yaml", label: "preprocessor, avgPreprocessor and Combiner colocated", coldWakes: 3 },
  { key: "ingress", file: "tutorial-ingress.yaml", label: "proxy.location ingress", coldWakes: 6 },
  { key: "colocated-ingress", file: "tutorial-colocated-ingress.yaml", label: "cheap steps colocated and proxy.location ingress", coldWakes: 2 },
] as const;
type Key = (typeof PLACEMENTS)[number]["key"];
/** The hand-written floors of the as-written shape and of the colocated + ingress one, measured in the same rounds. */
const FLOORS = ["floor-written", "floor-colocated-ingress"] as const;
type Side = Key | (typeof FLOORS)[number];
const SIDES: readonly Side[] = [...PLACEMENTS.map((p) => p.key), ...FLOORS];

/**
 * Starts of the sides' pairs are this far apart, so their hops (at 0, 100, 150
 * and 450 ms) do not meet on the 2 cores: with 35 ms, no start or hop of one
 * side falls within 5 ms of another's.
 */
const STAGGER_MS = 35;

export const tutorial: Scenario = {
  name: "tutorial",
  title: "tutorial graph over HTTP, over its local execute",
  async run({ quick, procs, log }) {
    // 200 pairs: the p99 is then the third slowest, not the slowest (as it is of 100 or fewer).
    const pairs = quick ? 6 : 200;
    const file = join(EXAMPLES, "tutorial/graph.ts");
    const { dag } = (await import(file)) as { dag: { execute(...a: unknown[]): Promise<unknown> } };
    const servers = {} as Record<Key, ServeBin>;
    const urls = {} as Record<Side, string>;
    let floors: TutorialFloors | null = null;
    const meters = {} as Record<Key, WakeupMeter>;
    const httpMs = Object.fromEntries(SIDES.map((k) => [k, [] as number[]])) as Record<Side, number[]>;
    const overMs = Object.fromEntries(SIDES.map((k) => [k, [] as number[]])) as Record<Side, number[]>;
    const localMs: number[] = [];
    const timeLocal = async (args: unknown[], want: string) => {
      const t0 = performance.now();
      const out = await dag.execute(...args);
      const ms = performance.now() - t0;
      if (out !== want) throw new Error(`local execute answered ${JSON.stringify(out)}, expected ${want}`);
      return ms;
    };
    const timeHttp = async (url: string, args: unknown[], want: string) => {
      const t0 = performance.now();
      const res = await fetch(url, { method: "POST", body: JSON.stringify(args), headers: { "content-type": "application/json" } });
      const text = await res.text();
      const ms = performance.now() - t0;
      if (res.status !== 200 || text !== want) throw new Error(`POST ${url} answered ${res.status} ${text}, expected ${want}`);
      return ms;
    };
    /** One pair per side, each started STAGGER_MS after the one before. */
    const round_ = (args: unknown[], want: string, record: boolean) =>
      Promise.all(
        SIDES.map(async (key, k) => {
          await Bun.sleep(k * STAGGER_MS);
          const [l, h] = await Promise.all([timeLocal(args, want), timeHttp(urls[key], args, want)]);
          if (!record) return;
          if (key === "default") localMs.push(l);
          httpMs[key].push(h);
          overMs[key].push(h - l);
        }),
      );
    try {
      for (const p of PLACEMENTS) {
        servers[p.key] = await startServeBin(procs, p.file ? join(FIXTURES, p.file) : file, p.file ? { args: ["--app-dir", ROOT] } : {});
        meters[p.key] = new WakeupMeter(await processesOf(servers[p.key]));
        urls[p.key] = `${servers[p.key].url}/my-dag`;
      }
      floors = await startTutorialFloors(procs);
      urls["floor-written"] = floors.written.url;
      urls["floor-colocated-ingress"] = floors.colocatedIngress.url;
      for (const [args, want] of INPUTS) await round_(args, want, false); // warm up
      log(`tutorial: ${pairs} rounds; in each, one (HTTP request, local execute) pair per side (${SIDES.join(", ")}), started ${STAGGER_MS} ms apart`);
      const all = Object.values(meters);
      const measureAll = (fn: () => Promise<unknown>) => all.reduce<() => Promise<unknown>>((f, m) => () => m.measure(f), fn)();
      await measureAll(async () => {
        for (let i = 0; i < pairs; i++) await round_(...INPUTS[i % 2]!, true);
      });
    } finally {
      for (const s of Object.values(servers)) await s.stop();
      await floors?.close();
    }
    // The tutorial's processes sit idle between messages (they sleep); a message to an idle process pays its wake-up.
    const peer = await startRawPeer(procs);
    const busyUs: number[] = [];
    const idleUs: number[] = [];
    try {
      for (let i = 0; i < 200; i++) await peer.client.call(i);
      for (let i = 0; i < (quick ? 5 : 25); i++) {
        await Bun.sleep(100);
        let t0 = performance.now();
        await peer.client.call(i);
        idleUs.push((performance.now() - t0) * 1000);
        for (let k = 0; k < 20; k++) {
          t0 = performance.now();
          await peer.client.call(k);
          busyUs.push((performance.now() - t0) * 1000);
        }
      }
    } finally {
      await peer.close();
    }
    const idle = summarize(idleUs);
    const busy = summarize(busyUs);
    const l = summarize(localMs);
    const o = Object.fromEntries(SIDES.map((k) => [k, summarize(overMs[k])])) as Record<Side, ReturnType<typeof summarize>>;
    const h = summarize(httpMs.default);
    /** The floor of a placement: its cold wake-ups on the critical path, each at the measured idle ping-pong. */
    const floorMs = (k: Key) => round((PLACEMENTS.find((p) => p.key === k)!.coldWakes * idle.median) / 1000, 2);
    const placementRows = PLACEMENTS.filter((p) => p.key !== "default").flatMap((p) => [
      row({ id: `tutorial.${p.key}.median`, figure: `the same with ${p.label}, over local execute, median`, unit: "ms", value: o[p.key].median, baseline: { label: `its floor: ${p.coldWakes} cold wake-ups × the idle ping-pong`, value: floorMs(p.key) }, target: "≤ 3 ms", met: o[p.key].median <= 3, digits: 2 }),
      row({ id: `tutorial.${p.key}.p99`, figure: `the same with ${p.label}, p99`, unit: "ms", value: o[p.key].p99, baseline: { label: "as written, over local, p99", value: o.default.p99 }, target: "≤ 10 ms", met: o[p.key].p99 <= 10, digits: 2 }),
    ]);
    /** The hand-written floors, each beside the placement of its shape. */
    const floorRows = ([
      ["floor-written", "default", "as written: 7 hand-written processes (a Bun.serve relay → a raw driver → the preprocessors and a Combiner → the two Models)", "as written"],
      ["floor-colocated-ingress", "colocated-ingress", "cheap steps colocated and ingress: 3 hand-written processes (a Bun.serve running the preprocessors and the Combiner → the two Models)", "cheap steps colocated and ingress"],
    ] as const).flatMap(([f, k, shape, label]) => [
      row({ id: `tutorial.${f}.median`, figure: `the floor of the shape ${shape}, over local execute, median`, unit: "ms", value: o[f].median, baseline: { label: `serve-bin ${label}, median`, value: o[k].median }, digits: 2 }),
      row({ id: `tutorial.${f}.p99`, figure: `the same floor, p99`, unit: "ms", value: o[f].p99, baseline: { label: `serve-bin ${label}, p99`, value: o[k].p99 }, digits: 2 }),
    ]);
    const perRequest = (k: Key) => ({ wakeups: meters[k].perUnit(pairs), cpuUs: meters[k].cpuPerUnitUs(pairs) });
    return {
      method: `${pairs} rounds; in each, for every placement of the graph, POST /my-dag and dag.execute(...) in the bench process start together (the placements ${STAGGER_MS} ms apart, so their hops do not meet), alternating the spec's two inputs; the figure is each pair's HTTP latency minus its local latency (both include the same 0.45 s of sleeps). Placements: as written (proxy → DAGDriver → preprocessor, avgPreprocessor, Combiner → Model, Model_1), with preprocessor, avgPreprocessor and Combiner colocated (bench/fixtures/tutorial-colocated.yaml: 4 replica processes instead of 7), with proxy.location ingress (tutorial-ingress.yaml: the DAGDriver replicas take the HTTP connections, no relay through the main process) and both (tutorial-colocated-ingress.yaml). The two extreme shapes also run hand-written in the same rounds, as their floors (bench/lib/tutorial-floor.ts: the same steps and sleeps in raw processes, one msgpack message per hop, a bare Bun.serve in front): as written 7 processes, colocated + ingress 3. Each placement's estimated floor is the number of messages on its critical path that reach a process idle for 50 ms or more (as written 7, ingress 6, colocated 3, both 2) times the measured raw ping-pong after 100 ms idle. Wake-ups and CPU time per request of every process of each placement are counted over the whole run (they include each replica's periodic load and metrics messages).`,
      rows: [
        row({ id: "tutorial.over.median", figure: "HTTP latency over local execute, median", unit: "ms", value: o.default.median, baseline: { label: "local execute, median", value: l.median }, ratio: h.median / l.median, target: "≤ 3 ms", met: o.default.median <= 3, note: "ratio: HTTP ÷ local", digits: 2 }),
        row({ id: "tutorial.over.p99", figure: "HTTP latency over local execute, p99", unit: "ms", value: o.default.p99, baseline: { label: "local execute, p99", value: l.p99 }, ratio: summarize(httpMs.default).p99 / l.p99, target: "≤ 10 ms", met: o.default.p99 <= 10, note: "ratio: HTTP ÷ local", digits: 2 }),
        row({ id: "tutorial.floor", figure: "as written: its floor, 7 cold wake-ups on the critical path × the idle ping-pong", unit: "ms", value: floorMs("default"), baseline: { label: "as written, over local, median", value: o.default.median }, digits: 2 }),
        ...placementRows,
        ...floorRows,
        row({ id: "tutorial.idle-wake", figure: "raw unix-socket ping-pong after 100 ms idle, median (the cost of a message to an idle process)", unit: "µs", value: idle.median, baseline: { label: "the same ping-pong back to back, median", value: busy.median }, digits: 1 }),
        row({ id: "tutorial.http.median", figure: "HTTP latency, median (Ray Serve published 0.48–0.49 s)", unit: "ms", value: h.median, baseline: { label: "local execute, median", value: l.median }, digits: 1 }),
        row({ id: "tutorial.wakeups", figure: "wake-ups per request as written, all serve-bin processes (incl. periodic load/metrics messages)", unit: "wake-ups", value: perRequest("default").wakeups.total ?? null, baseline: { label: "cheap steps colocated and ingress", value: perRequest("colocated-ingress").wakeups.total ?? null }, digits: 1 }),
      ],
      series: {
        overMs: roundSummary(o.default, 3),
        ...Object.fromEntries(PLACEMENTS.filter((p) => p.key !== "default").map((p) => [`over-${p.key}-Ms`, roundSummary(o[p.key], 3)])),
        ...Object.fromEntries(FLOORS.map((f) => [`over-${f}-Ms`, roundSummary(o[f], 3)])),
        httpMs: roundSummary(h, 3),
        localMs: roundSummary(l, 3),
        rawAfterIdleUs: roundSummary(idle, 1),
        rawBackToBackUs: roundSummary(busy, 1),
        perRequest: Object.fromEntries(PLACEMENTS.map((p) => [p.key, perRequest(p.key)])),
      },
      notes: [],
    };
  },
};
