/**
 * Peer baseline for the diamond: what a TypeScript team would write by hand —
 * Hono on Bun.serve with the same three functions in a piscina pool of 2
 * worker threads (one task per function: the two models at once, then the
 * ensemble, as the graph runs them). Prints its URL.
 */
import { Hono } from "hono";
import { Piscina } from "piscina";

const pool = new Piscina({ filename: new URL("./diamond-worker.ts", import.meta.url).href, minThreads: 2, maxThreads: 2 });
const app = new Hono();
app.post("/", async (c) => {
  const [a, b, x] = (await c.req.json()) as [number, number, number];
  const [ra, rb] = await Promise.all([pool.run({ m: 0, x: a }), pool.run({ m: 1, x: b })]);
  return c.json(await pool.run({ e: [ra, rb, x] }));
});
const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: app.fetch });
process.on("SIGTERM", () => {
  server.stop(true);
  void pool.destroy().finally(() => process.exit(0));
});
process.stdout.write(`listening on http://127.0.0.1:${server.port}\n`);
