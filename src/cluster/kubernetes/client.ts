/**
 * A small Kubernetes API client on `fetch`: the few calls serve-bin's
 * controller makes, each with the exact path, verb and content type the API
 * server expects, so a test can hold it to them.
 *
 * Why not @kubernetes/client-node: it does work inside the compiled binary
 * (checked 2026-11-29: a list call from a `bun build --compile` binary), but
 * it brings 65 packages (83 MB installed) as runtime dependencies for a
 * handful of calls. This file is those calls plus a line-JSON watch.
 *
 *   - `listEndpointSlices` / `watchEndpointSlices`: list, then watch from the
 *     list's resourceVersion (line-delimited JSON events, bookmarks on);
 *   - `scale`: GET `deployments/NAME/scale`, then a merge PATCH carrying the
 *     resourceVersion read, retried on 409 (someone scaled in between);
 *   - `getConfigMap` / `updateConfigMap`: read, change, PUT with the
 *     resourceVersion read, retried on 409;
 *   - `getLease` / `updateLease`: the controller's Lease (see lease.ts);
 * all as the controller's ServiceAccount (see `inClusterConfig`).
 */
import type { Lease } from "kubernetes-types/coordination/v1";
import type { ConfigMap } from "kubernetes-types/core/v1";
import type { EndpointSlice } from "kubernetes-types/discovery/v1";

/** The pod annotation the ReplicaSet controller ranks pods by when it scales down (lower goes first). */
export const POD_DELETION_COST = "controller.kubernetes.io/pod-deletion-cost";

/** Where the API server is and how to authenticate to it. */
export interface KubeClientOptions {
  /** Base URL, e.g. `https://10.96.0.1:443`. */
  server: string;
  namespace: string;
  /** The bearer token; a function is called per request (service account tokens rotate on disk). */
  token: string | (() => string | Promise<string>);
  /** PEM of the CA that signed the server's certificate. */
  ca?: string;
  /** Attempts of a read-modify-write that meets 409 Conflict before giving up. Default 5. */
  conflictRetries?: number;
}

/** An answer of the API server that was not a success: its HTTP status and the Status object's reason. */
export class KubeApiError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = "KubeApiError";
  }
}

/** The `scale` subresource, as much of it as serve-bin reads. */
export interface Scale {
  metadata: { name: string; resourceVersion: string };
  spec: { replicas?: number };
  status?: { replicas: number; selector?: string };
}

/** One event of a watch. `ERROR` carries a Status (code 410: the resourceVersion is too old). */
export type WatchEvent<T> =
  | { type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK"; object: T }
  | { type: "ERROR"; object: { code?: number; reason?: string; message?: string } };

/** A list's items and the resourceVersion to watch from. */
export interface ListResult<T> {
  items: T[];
  resourceVersion: string;
}

/**
 * The client.
 * @example const k = new KubeClient(await inClusterConfig()); await k.scale("default-model-8a1239", 3);
 */
export class KubeClient {
  readonly namespace: string;
  /** The API server's base URL. */
  readonly server: string;
  readonly #opts: KubeClientOptions;

  constructor(opts: KubeClientOptions) {
    this.#opts = opts;
    this.namespace = opts.namespace;
    this.server = opts.server;
  }

  async #fetch(method: string, path: string, init: { body?: unknown; contentType?: string; signal?: AbortSignal } = {}): Promise<Response> {
    const token = typeof this.#opts.token === "function" ? await this.#opts.token() : this.#opts.token;
    const headers: Record<string, string> = { authorization: `Bearer ${token}`, accept: "application/json" };
    if (init.body !== undefined) headers["content-type"] = init.contentType ?? "application/json";
    const res = await fetch(this.#opts.server.replace(/\/+$/, "") + path, {
      method,
      headers,
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
      signal: init.signal,
      ...(this.#opts.ca ? { tls: { ca: this.#opts.ca } } : {}),
    } as RequestInit);
    if (!res.ok) {
      const status = (await res.json().catch(() => ({}))) as { reason?: string; message?: string };
      throw new KubeApiError(res.status, status.reason ?? res.statusText, `${method} ${path}: ${res.status} ${status.message ?? res.statusText}`);
    }
    return res;
  }

  async #json<T>(method: string, path: string, init?: { body?: unknown; contentType?: string }): Promise<T> {
    return (await (await this.#fetch(method, path, init)).json()) as T;
  }

  /** Reads, changes and writes with the resourceVersion read; a 409 (someone wrote in between) starts over. */
  async #retryConflicts<T>(attempt: () => Promise<T>): Promise<T> {
    const tries = this.#opts.conflictRetries ?? 5;
    for (let i = 1; ; i++) {
      try {
        return await attempt();
      } catch (e) {
        if (!(e instanceof KubeApiError && e.status === 409) || i >= tries) throw e;
      }
    }
  }

  #slices(query: Record<string, string>): string {
    return `/apis/discovery.k8s.io/v1/namespaces/${this.namespace}/endpointslices?${new URLSearchParams(query)}`;
  }

  /** EndpointSlices matching a label selector, and the resourceVersion to watch from. */
  async listEndpointSlices(labelSelector: string): Promise<ListResult<EndpointSlice>> {
    const list = await this.#json<{ items: EndpointSlice[]; metadata: { resourceVersion: string } }>("GET", this.#slices({ labelSelector }));
    return { items: list.items, resourceVersion: list.metadata.resourceVersion };
  }

  /**
   * Watch events from `resourceVersion` on, until the server ends the stream
   * (its timeout, a restart, a dropped connection) or `signal` aborts. A 410
   * arrives as an `ERROR` event, or as a thrown KubeApiError with status 410.
   */
  async *watchEndpointSlices(labelSelector: string, resourceVersion: string, signal?: AbortSignal): AsyncGenerator<WatchEvent<EndpointSlice>> {
    const res = await this.#fetch("GET", this.#slices({ labelSelector, watch: "1", resourceVersion, allowWatchBookmarks: "true" }), { signal });
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let buffered = "";
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        buffered += decoder.decode(value, { stream: true });
        let nl: number;
        while ((nl = buffered.indexOf("\n")) >= 0) {
          const line = buffered.slice(0, nl).trim();
          buffered = buffered.slice(nl + 1);
          if (line) yield JSON.parse(line) as WatchEvent<EndpointSlice>;
        }
      }
    } finally {
      reader.releaseLock();
      await res.body!.cancel().catch(() => {});
    }
  }

  #scalePath(name: string): string {
    return `/apis/apps/v1/namespaces/${this.namespace}/deployments/${name}/scale`;
  }

  /** The Deployment's scale subresource. */
  getScale(name: string): Promise<Scale> {
    return this.#json<Scale>("GET", this.#scalePath(name));
  }

  /**
   * Sets a Deployment's replica count: reads its scale, then merge-patches
   * `spec.replicas` with the resourceVersion read, so a concurrent change is
   * seen (409) and the count applied again on top of it. No PATCH when the
   * count is already there, nor for an `atLeast` count already met (the
   * controller's claims only ever raise a count that way; only a stop it
   * chose lowers one, `exactly`).
   */
  scale(name: string, replicas: number, how: "atLeast" | "exactly" = "exactly"): Promise<Scale> {
    return this.#retryConflicts(async () => {
      const current = await this.getScale(name);
      const now = current.spec.replicas ?? 0;
      if (now === replicas || (how === "atLeast" && now > replicas)) return current;
      const patch = { metadata: { resourceVersion: current.metadata.resourceVersion }, spec: { replicas } };
      return this.#json<Scale>("PATCH", this.#scalePath(name), { body: patch, contentType: "application/merge-patch+json" });
    });
  }

  /**
   * Sets a pod's `controller.kubernetes.io/pod-deletion-cost` (merge patch):
   * when its Deployment's count goes down, the ReplicaSet deletes the pods of
   * lowest cost first (after the ones not ready).
   */
  setDeletionCost(pod: string, cost: number): Promise<unknown> {
    const body = { metadata: { annotations: { [POD_DELETION_COST]: String(cost) } } };
    return this.#json("PATCH", `/api/v1/namespaces/${this.namespace}/pods/${pod}`, { body, contentType: "application/merge-patch+json" });
  }

  #configMapPath(name: string): string {
    return `/api/v1/namespaces/${this.namespace}/configmaps/${name}`;
  }

  #leasePath(name: string): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${this.namespace}/leases/${name}`;
  }

  getLease(name: string): Promise<Lease> {
    return this.#json<Lease>("GET", this.#leasePath(name));
  }

  /** PUTs the Lease as given (with the resourceVersion it was read at: a 409 means another holder wrote first). */
  updateLease(lease: Lease): Promise<Lease> {
    return this.#json<Lease>("PUT", this.#leasePath(lease.metadata!.name!), { body: lease });
  }

  getConfigMap(name: string): Promise<ConfigMap> {
    return this.#json<ConfigMap>("GET", this.#configMapPath(name));
  }

  /** Replaces a ConfigMap's data with `change(data)`, as read at its current resourceVersion; retried on 409. */
  updateConfigMap(name: string, change: (data: Record<string, string>) => Record<string, string>): Promise<ConfigMap> {
    return this.#retryConflicts(async () => {
      const current = await this.getConfigMap(name);
      return this.#json<ConfigMap>("PUT", this.#configMapPath(name), { body: { ...current, data: change({ ...current.data }) } });
    });
  }
}
