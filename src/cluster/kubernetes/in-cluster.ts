/**
 * The controller's API credentials inside a pod: the API server from
 * `KUBERNETES_SERVICE_HOST`/`_PORT` (set by the kubelet in every pod), the
 * ServiceAccount's token, CA and namespace from the files Kubernetes mounts.
 * Paths and variables are parameters, so a test points them at a stand-in.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { KubeClientOptions } from "./client.ts";

/** Where Kubernetes mounts a pod's ServiceAccount credentials. */
export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/** Where to look; every field has the in-pod default. */
export interface InClusterSource {
  /** Default SERVICE_ACCOUNT_DIR. */
  dir?: string;
  /** The environment holding KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT (the caller reads it once). */
  env: Record<string, string | undefined>;
  /** Overrides the API server URL (a test's stand-in, or `http://127.0.0.1:8001` under `kubectl proxy`). */
  server?: string;
}

/**
 * Client options from the pod's ServiceAccount. The token is re-read on
 * each request: Kubernetes rotates the projected token file about hourly.
 * @example new KubeClient(inClusterConfig({ env: process.env }))
 */
export function inClusterConfig(source: InClusterSource): KubeClientOptions {
  const dir = source.dir ?? SERVICE_ACCOUNT_DIR;
  const read = (file: string) => {
    try {
      return readFileSync(join(dir, file), "utf8").trim();
    } catch (e) {
      throw new Error(`cannot read ${join(dir, file)} (${(e as NodeJS.ErrnoException).code}): the controller needs its ServiceAccount token there; is automountServiceAccountToken on for its pod?`);
    }
  };
  let server = source.server;
  if (!server) {
    const { KUBERNETES_SERVICE_HOST: host, KUBERNETES_SERVICE_PORT: port } = source.env;
    if (!host || !port) throw new Error("KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set: the Kubernetes engine runs inside a pod (or give it the API server's URL)");
    server = `https://${host.includes(":") ? `[${host}]` : host}:${port}`;
  }
  const namespace = read("namespace");
  read("token"); // fail now, not on the first call
  const ca = server.startsWith("https:") ? read("ca.crt") : undefined;
  return { server, namespace, ca, token: () => read("token") };
}
