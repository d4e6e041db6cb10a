/**
 * The floor of the tutorial graph's two extreme shapes, with none of
 * serve-bin in them: its steps (bench/lib/tutorial-steps.ts) in raw
 * processes that sleep as the deployments do and send one message per hop.
 *   written    7 processes, as serve-bin runs the graph as written: a bare
 *              Bun.serve relaying each request (bench/lib/http-floor.ts relay)
 *              to a raw driver (bench/lib/driver-peer.ts diamond) that calls
 *              the preprocessor and avgPreprocessor peers at once, then a
 *              Combiner peer (driver-peer.ts combiner) that calls both Model
 *              peers (bench/lib/echo-peer.ts).
 *   colocatedIngress  3 processes, as serve-bin runs it with its cheap steps
 *              colocated and proxy.location ingress: a bare Bun.serve that
 *              runs the preprocessors and the Combiner itself (http-floor.ts
 *              tutorial) and calls the two Model peers.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BUN, LIB } from "./paths.ts";
import type { ProcessSet, Tracked } from "./procs.ts";
import { startRawDriver, type RawDriver } from "./raw-floor.ts";

export interface TutorialFloor {
  /** Where to POST the graph's input. */
  url: string;
  /** Pid of every process of the floor, by name. */
  pids: Record<string, number>;
}

export interface TutorialFloors {
  written: TutorialFloor;
  colocatedIngress: TutorialFloor;
  close(): Promise<void>;
}

export async function startTutorialFloors(procs: ProcessSet): Promise<TutorialFloors> {
  const dir = mkdtempSync(join(tmpdir(), "sb-bench-tutorial-"));
  const started: Tracked[] = [];
  const drivers: RawDriver[] = [];
  const close = async () => {
    for (const p of started.reverse()) await p.stop();
    for (const d of drivers) await d.close();
    rmSync(dir, { recursive: true, force: true });
  };
  const spawn = async (name: string, script: string, args: string[], ready: RegExp) => {
    const p = procs.spawn(name, [BUN, join(LIB, script), ...args]);
    started.push(p);
    return { p, m: await p.waitFor(ready, 10_000) };
  };
  /** An echo peer answering the tutorial step `step`; returns its socket. */
  const stepPeer = async (floor: string, step: string) => {
    const path = join(dir, `${floor}-${step}.sock`);
    await spawn(`${floor} floor: ${step}`, "echo-peer.ts", [path, step], /echo peer ready/);
    return path;
  };
  const driver = async (name: string, shape: string, paths: string[]) => {
    const d = await startRawDriver(procs, name, shape, paths);
    drivers.push(d);
    return d;
  };
  const front = async (floor: string, shape: string, paths: string[]) =>
    (await spawn(`${floor} floor: HTTP`, "http-floor.ts", [shape, ...paths], /listening on (http:\/\/\S+)/)).m[1]! + "/my-dag";
  const pidsSince = (from: number, ds: RawDriver[]) => ({
    ...Object.fromEntries(started.slice(from).map((p) => [p.name, p.pid])),
    ...Object.fromEntries(ds.map((d) => [d.name, d.pid])),
  });
  try {
    const models = [await stepPeer("written", "Model"), await stepPeer("written", "Model_1")];
    const pre = [await stepPeer("written", "preprocessor"), await stepPeer("written", "avgPreprocessor")];
    const combiner = await driver("written floor: Combiner", "combiner", models);
    const dagDriver = await driver("written floor: DAGDriver", "diamond", [...pre, combiner.path]);
    const written = { url: await front("written", "relay", [dagDriver.path]), pids: pidsSince(0, [combiner, dagDriver]) };
    const from = started.length;
    const colocatedModels = [await stepPeer("colocated-ingress", "Model"), await stepPeer("colocated-ingress", "Model_1")];
    const colocatedIngress = { url: await front("colocated-ingress", "tutorial", colocatedModels), pids: pidsSince(from, []) };
    return { written, colocatedIngress, close };
  } catch (e) {
    await close();
    throw e;
  }
}
