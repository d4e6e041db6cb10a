/**
 * The `serve` namespace of the public API. `build` and `toYAML` are light;
 * `run`, `url` and `shutdown` load the server (controller, proxy, admin API)
 * on first use, so a replica that imports "serve-bin" never loads it.
 */
import { build, toYAML, relativeImport, Application } from "./http/application.ts";
import type * as Runtime from "./http/serve-api.ts";
import { ServeError } from "./error.ts";

let runtime: typeof Runtime | null = null;
const load = async () => (runtime ??= await import("./http/serve-api.ts"));

/** @see Runtime.run */
const run: typeof Runtime.run = async (target, opts) => (await load()).run(target, opts);

/** The URL the running server's proxy listens on. */
function url(): string {
  if (!runtime) throw new ServeError("not_found", "no server is running; call serve.run first");
  return runtime.url();
}

/** Drains and stops what serve.run started; nothing to do when nothing runs. */
async function shutdown(): Promise<void> {
  await runtime?.shutdown();
}

export const serve = { build, run, url, shutdown, toYAML, relativeImport, Application };
