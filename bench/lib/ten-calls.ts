/**
 * What chain10 and ensemble10 share: one request into a served graph that
 * makes ten handle calls (timed inside the calling replica, which answers with
 * its per-request microseconds), alternated with ten raw ping-pongs to an echo
 * process made the same way (in a row, or at once).
 */
import { join } from "node:path";
import { FIXTURES } from "./paths.ts";
import { startRawPeer, type RawPeer } from "./raw-client.ts";
import { alternate, type Ctx } from "./scenario.ts";
import { postJSON, startServeBin } from "./server.ts";
import { summarize } from "./stats.ts";

export async function measureTenCalls(
  ctx: Ctx,
  name: string,
  tenRaw: (client: RawPeer["client"], i: number) => Promise<unknown>,
): Promise<{ served: ReturnType<typeof summarize>; raw: ReturnType<typeof summarize>; n: number; rounds: number }> {
  const rounds = ctx.quick ? 2 : 10;
  const perRound = ctx.quick ? 50 : 200;
  const server = await startServeBin(ctx.procs, join(FIXTURES, `${name}.ts`));
  const peer = await startRawPeer(ctx.procs);
  const us: number[] = [];
  const rawUs: number[] = [];
  try {
    await postJSON(server.url, { n: 100 });
    for (let i = 0; i < 200; i++) await peer.client.call(i);
    ctx.log(`${name}: ${rounds} rounds of ${perRound} requests`);
    await alternate(
      rounds,
      async () => void us.push(...(JSON.parse(await postJSON(server.url, { n: perRound })) as number[])),
      async () => {
        for (let i = 0; i < perRound; i++) {
          const t0 = performance.now();
          await tenRaw(peer.client, i);
          rawUs.push((performance.now() - t0) * 1000);
        }
      },
    );
  } finally {
    await peer.close();
    await server.stop();
  }
  return { served: summarize(us.map((v) => v / 1000)), raw: summarize(rawUs.map((v) => v / 1000)), n: us.length, rounds };
}
