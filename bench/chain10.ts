/**
 * chain10: one request through ten no-op deployments in a line (each calls
 * the next through its handle), timed in the calling replica; against ten
 * raw unix-socket ping-pongs in a row, and against ten distinct raw relay
 * processes in a line (the floor of ten hops that each wake a process).
 */
import type { Scenario } from "./lib/scenario.ts";
import { measureTenCalls, tenCallRows, tenCallSeries } from "./lib/ten-calls.ts";

export const chain10: Scenario = {
  name: "chain10",
  title: "ten no-op deployments in a line, one request",
  async run(ctx) {
    const t = await measureTenCalls(
      ctx,
      "chain10",
      async (client, i) => {
        for (let k = 0; k < 10; k++) await client.call(i);
      },
      "chain",
    );
    return {
      method: `${t.n} requests, each one handle call from the driver replica into Link_9 → Link_8 → … → Link (ten deployments, one replica each, each awaiting the next), timed in the driver; baselines: ten sequential raw msgpack ping-pongs over one unix socket to one echo process, and the floor of the graph's shape: ten raw relay processes in a line (bench/lib/relay-peer.ts: each decodes the call, passes it on, passes the answer back; the last answers), called from the bench process. Over HTTP: the same request as sequential POSTs from the bench process (fetch, one kept-alive connection), against the same POSTs to a bare Bun.serve that echoes the JSON, to a bare Bun.serve that makes the same ten calls through the ten raw processes (bench/lib/http-floor.ts: the floor over HTTP), to the same graph with proxy.location ingress (bench/fixtures/chain10-ingress.yaml) and with its ten callees colocated (bench/fixtures/chain10-colocated.yaml), with each process's voluntary context switches (wake-ups) and CPU time counted meanwhile, serve-bin's and the two HTTP floors' alike; ${t.rounds} rounds, the order of the eight sides rotating.`,
      rows: tenCallRows("chain10", t, { figure: "10-deployment linear chain", raw: "ten raw ping-pongs in a row", floor: "ten relays in a line", ray: "46.7 ms" }),
      series: tenCallSeries(t, "chainMs"),
      notes: [],
    };
  },
};
