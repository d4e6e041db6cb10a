/**
 * tutorial: the seed tutorial graph over HTTP against the same graph's local
 * `execute` in this process (its 0.45 s critical path of sleeps). Each pair
 * starts both at once; the figure is HTTP latency − local latency per pair.
 * A third request goes to the same graph with its cheap steps colocated.
 */
import { join } from "node:path";
import { EXAMPLES, FIXTURES, ROOT } from "./lib/paths.ts";
import { row, type Scenario } from "./lib/scenario.ts";
import { startRawPeer } from "./lib/raw-client.ts";
import { startServeBin } from "./lib/server.ts";
import { roundSummary, summarize } from "./lib/stats.ts";

const INPUTS: [unknown[], string][] = [
  [["5", [1, 2], "sum"], "sum(['(1 * (5 + 1.5))', '(2 * (5 + 1.5))'])"],
  [["1", [0, 2], "max"], "max(['(1 * (1 + 1))', '(2 * (1 + 1))'])"],
];

export const tutorial: Scenario = {
  name: "tutorial",
  title: "tutorial graph over HTTP, over its local execute",
  async run({ quick, procs, log }) {
    const pairs = quick ? 6 : 80;
    const file = join(EXAMPLES, "tutorial/graph.ts");
    const { dag } = (await import(file)) as { dag: { execute(...a: unknown[]): Promise<unknown> } };
    const server = await startServeBin(procs, file);
    const colocated = await startServeBin(procs, join(FIXTURES, "tutorial-colocated.yaml"), { args: ["--app-dir", ROOT] });
    const httpMs: number[] = [];
    const localMs: number[] = [];
    const overMs: number[] = [];
    const overColocatedMs: number[] = [];
    const timeLocal = async (args: unknown[], want: string) => {
      const t0 = performance.now();
      const out = await dag.execute(...args);
      const ms = performance.now() - t0;
      if (out !== want) throw new Error(`local execute answered ${JSON.stringify(out)}, expected ${want}`);
      return ms;
    };
    const timeHttp = async (base: string, args: unknown[], want: string) => {
      const url = `${base}/my-dag`;
      const t0 = performance.now();
      const res = await fetch(url, { method: "POST", body: JSON.stringify(args), headers: { "content-type": "application/json" } });
      const text = await res.text();
      const ms = performance.now() - t0;
      if (res.status !== 200 || text !== want) throw new Error(`POST ${url} answered ${res.status} ${text}, expected ${want}`);
      return ms;
    };
    try {
      for (const [args, want] of INPUTS) await Promise.all([timeLocal(args, want), timeHttp(server.url, args, want), timeHttp(colocated.url, args, want)]); // warm up
      log(`tutorial: ${pairs} triples of (HTTP request, HTTP request with the cheap steps colocated, local execute), started together`);
      for (let i = 0; i < pairs; i++) {
        const [args, want] = INPUTS[i % 2]!;
        const [l, h, hc] = await Promise.all([timeLocal(args, want), timeHttp(server.url, args, want), timeHttp(colocated.url, args, want)]);
        localMs.push(l);
        httpMs.push(h);
        overMs.push(h - l);
        overColocatedMs.push(hc - l);
      }
    } finally {
      await colocated.stop();
      await server.stop();
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
    const o = summarize(overMs);
    const oc = summarize(overColocatedMs);
    const h = summarize(httpMs);
    const l = summarize(localMs);
    return {
      method: `${pairs} pairs; in each, POST /my-dag (proxy → DAGDriver → preprocessor, avgPreprocessor, Combiner → Model, Model_1) and dag.execute(...) in the bench process start together, alternating the spec's two inputs; the figure is each pair's HTTP latency minus its local latency (both include the same 0.45 s of sleeps). A third request, started with them, goes to the same graph served with preprocessor, avgPreprocessor and Combiner colocated (bench/fixtures/tutorial-colocated.yaml: 4 replica processes instead of 7).`,
      rows: [
        row({
          id: "tutorial.over.median",
          figure: "HTTP latency over local execute, median",
          unit: "ms",
          value: o.median,
          baseline: { label: "local execute, median", value: l.median },
          ratio: h.median / l.median,
          target: "≤ 3 ms",
          met: o.median <= 3,
          note: "ratio: HTTP ÷ local",
          digits: 2,
        }),
        row({
          id: "tutorial.over.p99",
          figure: "HTTP latency over local execute, p99",
          unit: "ms",
          value: o.p99,
          baseline: { label: "local execute, p99", value: l.p99 },
          ratio: h.p99 / l.p99,
          target: "≤ 10 ms",
          met: o.p99 <= 10,
          note: "ratio: HTTP ÷ local",
          digits: 2,
        }),
        row({ id: "tutorial.colocated.median", figure: "the same with preprocessor, avgPreprocessor and Combiner colocated, over local execute, median", unit: "ms", value: oc.median, baseline: { label: "default placement, over local, median", value: o.median }, digits: 2 }),
        row({ id: "tutorial.colocated.p99", figure: "the same with the cheap steps colocated, p99", unit: "ms", value: oc.p99, baseline: { label: "default placement, over local, p99", value: o.p99 }, digits: 2 }),
        row({
          id: "tutorial.idle-wake",
          figure: "raw unix-socket ping-pong after 100 ms idle, median (the tutorial's replicas wake from idle about 8 times per request)",
          unit: "µs",
          value: idle.median,
          baseline: { label: "the same ping-pong back to back, median", value: busy.median },
          digits: 1,
        }),
        row({ id: "tutorial.http.median", figure: "HTTP latency, median (Ray Serve published 0.48–0.49 s)", unit: "ms", value: h.median, baseline: { label: "local execute, median", value: l.median }, digits: 1 }),
      ],
      series: { overMs: roundSummary(o, 3), overColocatedMs: roundSummary(oc, 3), httpMs: roundSummary(h, 3), localMs: roundSummary(l, 3), rawAfterIdleUs: roundSummary(idle, 1), rawBackToBackUs: roundSummary(busy, 1) },
      notes: [],
    };
  },
};
