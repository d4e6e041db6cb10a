/**
 * `serve.run`, `serve.url`, `serve.shutdown`: the full runtime in this
 * process. Loaded only when first called (see src/serve.ts).
 */
import { ServeError } from "../error.ts";
import { createHandle, type DeploymentHandle } from "../api/handle.ts";
import { parseConfig } from "../config/schema.ts";
import { Application, buildFrom, exportNameOf, needNode, type IngressMethods, type RunOptions } from "./application.ts";
import { Server } from "./server.ts";

let running: { server: Server; app: string } | null = null;

/**
 * A handle has a `then` that throws, so that awaiting one by mistake fails
 * loudly; but resolving a promise with it reads `then`, so `serve.run` would
 * always reject. The handle it returns reads `then` as undefined instead: the
 * promise resolves to the handle itself (as Ray's serve.run returns one).
 */
function resolvable<T>(handle: DeploymentHandle<T>): DeploymentHandle<T> {
  return new Proxy(handle, { get: (t, prop) => (prop === "then" ? undefined : Reflect.get(t, prop)) });
}

/**
 * Starts the full runtime (real replica processes) for a node or an
 * Application and resolves to a handle to its ingress (a DAGDriver's
 * `predict`, or the ingress class's methods). `serve.url()` is where it
 * serves HTTP; `serve.shutdown()` stops it.
 * @example
 * const h = await serve.run(graph, { port: 0 });
 * console.log(await h.predict.remote(["5", [1, 2], "sum"]));
 */
export async function run<T = IngressMethods>(target: unknown, opts: RunOptions = {}): Promise<DeploymentHandle<T>> {
  let app: Application;
  if (target instanceof Application) app = target;
  else {
    const n = needNode(target, "serve.run");
    const mod = (await import(n.sourceFile!)) as Record<string, unknown>;
    const exportName = exportNameOf(n, mod);
    if (!exportName) throw new ServeError("build", `serve.run: the node is not exported from ${n.sourceFile}; every replica imports that module, so export the node`);
    app = buildFrom(n, n.sourceFile!, exportName, opts);
  }
  const parsed = parseConfig({ ...app.config, applications: app.config.applications.map((a) => ({ ...a, importPath: a.importPath })) });
  if (!parsed.ok) throw new ServeError("invalid", parsed.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; "), { issues: parsed.issues });
  if (running) await shutdown();
  const server = await Server.start({ config: parsed.value, baseDir: app.baseDir, appDir: app.baseDir });
  const name = parsed.value.applications[0]!.name;
  running = { server, app: name };
  try {
    await server.apply(parsed.value);
  } catch (e) {
    await shutdown();
    throw e;
  }
  const a = server.controller.apps.get(name)!;
  const d = a.planned.graph.deployments.find((x) => x.name === a.planned.graph.ingress)!;
  return resolvable(createHandle<T>({ name: d.name, kind: d.kind, methods: d.methods }, a.invoker));
}

/** The URL the running server's proxy listens on. */
export function url(): string {
  if (!running) throw new ServeError("not_found", "no server is running; call serve.run first");
  return running.server.url;
}

/** Drains and stops what serve.run started. */
export async function shutdown(): Promise<void> {
  const r = running;
  running = null;
  await r?.server.stop();
}

