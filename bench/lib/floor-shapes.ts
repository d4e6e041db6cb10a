/**
 * How a floor's front process answers one request by calls to raw processes
 * (one message per hop, no runtime), by shape name. The same shapes serve
 * behind HTTP (bench/lib/http-floor.ts) and behind a unix socket, as a raw
 * driver process (bench/lib/driver-peer.ts) that a relay puts HTTP in front of.
 *   chain    `{"x": i}` → the head of a line of relays (chain10's floor)
 *   fanout   `{"x": i}` → ten echo peers at once (ensemble10's floor)
 *   relay    the whole value → one peer, and back what it answers
 *   diamond  `[a, b, x]` → both models at once, then the ensemble, over three
 *            function peers (bench/lib/diamond-floor.ts); also the tutorial's
 *            DAGDriver over its preprocessor, avgPreprocessor and Combiner
 *   combiner `[a, b, op]` → the tutorial's Combiner over its two Model peers
 *   tutorial `[x, xs, op]` → the tutorial with its cheap steps in this process,
 *            over its two Model peers (bench/lib/tutorial-floor.ts)
 */
import type { RawClient } from "./raw-client.ts";
import { avgPreprocessor, combine, preprocessor } from "./tutorial-steps.ts";

export const FLOOR_SHAPES: Record<string, (clients: RawClient[], body: any) => Promise<unknown>> = {
  chain: (clients, { x }: { x: number }) => clients[0]!.call(x),
  fanout: (clients, { x }: { x: number }) => Promise.all(clients.map((c) => c.call(x))),
  relay: (clients, body) => clients[0]!.call(body),
  diamond: async (clients, [a, b, x]: [number, number, number]) => {
    const [ra, rb] = await Promise.all([clients[0]!.call(a), clients[1]!.call(b)]);
    return clients[2]!.call([ra, rb, x]);
  },
  combiner: (clients, [a, b, op]: [number, number, string]) => combine((k, input) => clients[k]!.call(input), a, b, op),
  tutorial: async (clients, [x, xs, op]: [string, number[], string]) => {
    const [a, b] = await Promise.all([preprocessor(x), avgPreprocessor(xs)]);
    return combine((k, input) => clients[k]!.call(input), a, b, op);
  },
};

/** The shape named `name`, or an Error that lists them. */
export function floorShape(name: string | undefined, usage: string): (clients: RawClient[], body: any) => Promise<unknown> {
  const shape = FLOOR_SHAPES[name ?? ""];
  if (!shape) throw new Error(`usage: ${usage.replace("SHAPE", Object.keys(FLOOR_SHAPES).join("|"))}`);
  return shape;
}
