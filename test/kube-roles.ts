/**
 * What the Kubernetes tests with real role processes share: the API server
 * stand-in as `kubectl apply -k` leaves it for the controller (its ConfigMap
 * and an empty Lease), the ServiceAccount directory the controller reads, the
 * controller role started against them, and a steady load of requests.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { KubeApiStandIn } from "./kube-api-standin.ts";
import { startRole, type Role } from "./role-process.ts";

/** What the manifests set on the controller's container. */
export const KUBE_ENV = { SERVE_BIN_KUBE_CONFIGMAP: "serve-bin-config", SERVE_BIN_KUBE_LEASE: "serve-bin-controller", SERVE_BIN_KUBE_AUTOSCALER: "serve-bin" };

/** Starts `serve-bin controller --engine kubernetes` on `config` against a fresh stand-in; resolves once it links and serves its admin API. */
export async function kubeController(o: { roles: Role[]; secret: string; dir: string; config: string; hostname: string }): Promise<{ api: KubeApiStandIn; controller: Role; control: string; admin: string }> {
  const api = new KubeApiStandIn();
  api.putConfigMap("serve-bin-config", { "serve.yaml": "# as built\n" });
  api.putLease("serve-bin-controller");
  const sa = join(o.dir, "sa");
  mkdirSync(sa);
  writeFileSync(join(sa, "token"), api.token);
  writeFileSync(join(sa, "namespace"), api.namespace);
  const controller = startRole(
    o.roles,
    o.secret,
    "controller",
    ["controller", "--config", o.config, "--engine", "kubernetes", "--kube-api", api.url, "--kube-credentials", sa, "--listen", "tcp://127.0.0.1:0",
      "--host", "127.0.0.1", "--port", "0", "--admin-port", "0", "--state-dir", join(o.dir, "state"), "--app-dir", o.dir],
    { HOSTNAME: o.hostname, ...KUBE_ENV },
  );
  const control = (await controller.line(/control links on (tcp:\/\/\S+)/, "its control address"))[1]!;
  const admin = (await controller.line(/admin API on (http:\/\/[^\s)]+)/, "its admin address"))[1]!;
  return { api, controller, control, admin };
}

/** `clients` callers each sending one request after another until `stop()`; `accept` says whether an answer is right. */
export function steadyLoad(clients: number, send: () => Promise<Response>, accept: (res: Response, body: string) => boolean) {
  let going = true;
  const load = { ok: 0, failed: [] as string[], stop: async () => ((going = false), await running) };
  const running = Promise.all(
    Array.from({ length: clients }, async () => {
      while (going) {
        const res = await send().catch((e) => e as Error);
        const body = res instanceof Response ? await res.text() : String(res);
        if (res instanceof Response && accept(res, body)) load.ok++;
        else load.failed.push(`${res instanceof Response ? res.status : "error"} ${body}`);
      }
    }),
  );
  return load;
}
