/**
 * Baseline for the diamond: the same functions called in-process behind one
 * Hono route on Bun.serve (the no-process floor). Prints its URL.
 */
import { Hono } from "hono";
import { ensemble, ModelImpl } from "../fixtures/diamond-fns.ts";

const m1 = new ModelImpl(1);
const m2 = new ModelImpl(2);
const app = new Hono();
app.post("/", async (c) => {
  const [a, b, x] = (await c.req.json()) as [number, number, number];
  return c.json(ensemble(m1.forward(a), m2.forward(b), x));
});
const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: app.fetch });
process.on("SIGTERM", () => {
  server.stop(true);
  process.exit(0);
});
process.stdout.write(`listening on http://127.0.0.1:${server.port}\n`);
