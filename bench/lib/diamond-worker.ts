/**
 * The piscina worker of bench/lib/hono-piscina.ts: each task is one of the
 * diamond's functions, as each is one deployment in serve-bin.
 */
import { ensemble, ModelImpl } from "../fixtures/diamond-fns.ts";

const models = [new ModelImpl(1), new ModelImpl(2)];

/** `{ m: 0 | 1, x }` runs Model(weight m + 1).forward(x); `{ e: [a, b, c] }` runs ensemble. */
export default function task(t: { m: number; x: number } | { e: [number, number, number] }): number {
  return "e" in t ? ensemble(...t.e) : models[t.m]!.forward(t.x);
}
