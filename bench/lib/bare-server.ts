/**
 * Baseline: a bare Bun.serve answering the JSON POST the no-op graph gets
 * (parse the body, answer it as JSON). Prints its URL.
 */
const server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  async fetch(req) {
    return Response.json(await req.json());
  },
});
process.on("SIGTERM", () => {
  server.stop(true);
  process.exit(0);
});
process.stdout.write(`listening on http://127.0.0.1:${server.port}\n`);
