/**
 * A stand-in for the Kubernetes API server on `Bun.serve`, for the tests of
 * src/cluster/kubernetes/. No real API server (nor kind, k3s or minikube) can
 * run on these machines, so this plays the few endpoints serve-bin calls, with
 * the behaviour those calls rely on:
 *   - EndpointSlices: list (with a resourceVersion), watch (line-delimited JSON
 *     from a resourceVersion on; an ERROR event with code 410 when that
 *     version was compacted, or an HTTP 410 when `goneAsHttp`), label selectors
 *     of the `k=v,k=v` form, and `dropWatches()` to cut every open stream;
 *   - `deployments/NAME/scale`: GET, and merge PATCH (content type checked)
 *     refused with 409 when `metadata.resourceVersion` is stale; scaling a
 *     Deployment also plays its ReplicaSet and the EndpointSlice controller:
 *     pods appear as ready endpoints of the Deployment's Service;
 *   - ConfigMaps and Leases: GET and PUT, 409 on a stale resourceVersion;
 *   - pods the test's kubelet published (`setEndpoints`, each endpoint's
 *     `targetRef` names its pod): a merge PATCH of their annotations (the
 *     pod-deletion-cost the ReplicaSet ranks by), kept in `podAnnotations`;
 *   - a bearer token, 401 without it.
 * Every request is recorded (`calls`) so a test can assert the exact calls.
 * `afterGet` runs a function once right after answering a GET of a path: the
 * way to make "someone else wrote in between" happen at a precise point.
 */
import type { Server } from "bun";

type Obj = Record<string, any>;

export interface Call {
  method: string;
  /** Path and query, as sent. */
  url: string;
  contentType: string | null;
  body?: Obj;
}

interface Watcher {
  selector: Record<string, string>;
  controller: ReadableStreamDefaultController<Uint8Array>;
}

const encoder = new TextEncoder();
const status = (code: number, reason: string, message: string) => Response.json({ kind: "Status", apiVersion: "v1", status: "Failure", code, reason, message }, { status: code });

function parseSelector(s: string | null): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (s ?? "").split(",").filter(Boolean)) {
    const [k, v] = part.split("=");
    out[k!] = v!;
  }
  return out;
}
const matches = (labels: Obj | undefined, sel: Record<string, string>) => Object.entries(sel).every(([k, v]) => labels?.[k] === v);

/** One Deployment the stand-in plays: its scale, its Service (for slices) and pod IPs. */
interface FakeDeployment {
  replicas: number;
  resourceVersion: number;
  /** Ready pods, by IP; the ReplicaSet the stand-in plays adds and removes them on scale. */
  pods: { ip: string; ready: boolean }[];
  labels: Record<string, string>;
}

export class KubeApiStandIn implements AsyncDisposable {
  readonly calls: Call[] = [];
  readonly token = "standin-token";
  readonly namespace = "serving";
  /** Answer a too-old watch with HTTP 410 instead of an ERROR event (API servers do both). */
  goneAsHttp = false;
  #rv = 100;
  /** Watches from a version below this get 410 Gone (etcd compacted it). */
  #compactedBelow = 0;
  readonly #slices = new Map<string, Obj>();
  readonly #history: { rv: number; type: string; object: Obj }[] = [];
  readonly #watchers = new Set<Watcher>();
  readonly deployments = new Map<string, FakeDeployment>();
  readonly configMaps = new Map<string, Obj>();
  /** Each published pod's annotations, as PATCHes left them. */
  readonly podAnnotations = new Map<string, Record<string, string>>();
  readonly leases = new Map<string, Obj>();
  readonly #afterGet = new Map<string, () => void>();
  #nextIp = 10;
  readonly server: Server<unknown>;

  /** @param tls a certificate and key to serve HTTPS with, as a real API server does. */
  constructor(readonly tls?: { cert: string; key: string }) {
    this.server = Bun.serve({ port: 0, hostname: "127.0.0.1", idleTimeout: 0, tls, fetch: (req) => this.#handle(req) });
  }

  get url(): string {
    return `${this.tls ? "https" : "http"}://127.0.0.1:${this.server.port}`;
  }

  /** The calls made since the last `takeCalls`, as "METHOD url" strings. */
  takeCalls(): string[] {
    return this.calls.splice(0).map((c) => `${c.method} ${decodeURIComponent(c.url)}`);
  }

  /** Runs `fn` right after the next GET of `path` is answered. */
  afterGet(path: string, fn: () => void): void {
    this.#afterGet.set(path, fn);
  }

  addDeployment(name: string, labels: Record<string, string>, replicas = 0): void {
    this.deployments.set(name, { replicas: 0, resourceVersion: ++this.#rv, pods: [], labels });
    this.setReplicas(name, replicas);
  }

  /**
   * Set by a test that plays the kubelet with real processes: a scale then
   * only records the count and calls this; the test starts or stops the pods
   * and publishes their endpoints (`setEndpoints`).
   */
  onScale?: (name: string, replicas: number) => void;

  /** As `kubectl scale` or the ReplicaSet controller would: the count, then the pods and the slice. */
  setReplicas(name: string, replicas: number): void {
    const d = this.deployments.get(name)!;
    d.replicas = replicas;
    d.resourceVersion = ++this.#rv;
    if (this.onScale) return this.onScale(name, replicas);
    while (d.pods.length < replicas) d.pods.push({ ip: `10.1.0.${this.#nextIp++}`, ready: true });
    d.pods.length = replicas;
    this.#publishSlice(name);
  }

  /** A pod stops being ready (its node is lost, its readiness probe fails). */
  loseReady(name: string, ip: string): void {
    this.deployments.get(name)!.pods.find((p) => p.ip === ip)!.ready = false;
    this.#publishSlice(name);
  }

  #publishSlice(service: string): void {
    const d = this.deployments.get(service)!;
    const name = `${service}-abcde`;
    const type = this.#slices.has(name) ? "MODIFIED" : "ADDED";
    const slice = {
      apiVersion: "discovery.k8s.io/v1",
      kind: "EndpointSlice",
      metadata: { name, namespace: this.namespace, resourceVersion: String(++this.#rv), labels: { ...d.labels, "kubernetes.io/service-name": service } },
      addressType: "IPv4",
      ports: [{ name: "link", port: 7000, protocol: "TCP" }],
      endpoints: d.pods.map((p) => ({ addresses: [p.ip], conditions: { ready: p.ready, serving: p.ready, terminating: false } })),
    };
    this.#slices.set(name, slice);
    this.#event(type, slice);
  }

  /**
   * A Service's endpoints as the test's kubelet sees its pods: one slice per
   * pod (each pod's replica listens on its own port on 127.0.0.1, and a
   * slice's port applies to all its endpoints); slices of pods no longer
   * listed are deleted, changed ones modified.
   */
  setEndpoints(service: string, pods: { name: string; ip: string; port: number; ready: boolean; terminating?: boolean }[]): void {
    const labels = { ...this.deployments.get(service)!.labels, "kubernetes.io/service-name": service };
    const names = new Set(pods.map((p) => `${service}-${p.name}`));
    for (const [name, slice] of this.#slices) {
      if (slice.metadata.labels?.["kubernetes.io/service-name"] !== service || names.has(name)) continue;
      this.#slices.delete(name);
      this.#event("DELETED", { ...slice, metadata: { ...slice.metadata, resourceVersion: String(++this.#rv) } });
    }
    for (const p of pods) {
      const name = `${service}-${p.name}`;
      this.podAnnotations.set(p.name, this.podAnnotations.get(p.name) ?? {});
      // A deleted pod stays listed until its process exits, as terminating (not ready; serving while it drains).
      const terminating = p.terminating === true;
      const endpoints = [{ addresses: [p.ip], conditions: { ready: p.ready && !terminating, serving: p.ready, terminating }, targetRef: { kind: "Pod", name: p.name, namespace: this.namespace } }];
      const before = this.#slices.get(name);
      if (before && JSON.stringify(before.endpoints) === JSON.stringify(endpoints)) continue;
      const slice = {
        apiVersion: "discovery.k8s.io/v1",
        kind: "EndpointSlice",
        metadata: { name, namespace: this.namespace, resourceVersion: String(++this.#rv), labels },
        addressType: "IPv4",
        ports: [{ name: "link", port: p.port, protocol: "TCP" }],
        endpoints,
      };
      this.#slices.set(name, slice);
      this.#event(before ? "MODIFIED" : "ADDED", slice);
    }
  }

  /** An EndpointSlice of a Service serve-bin did not make (another app in the namespace). */
  addForeignSlice(name: string, labels: Record<string, string>): void {
    const slice = { apiVersion: "discovery.k8s.io/v1", kind: "EndpointSlice", metadata: { name, resourceVersion: String(++this.#rv), labels }, addressType: "IPv4", ports: [{ port: 80 }], endpoints: [{ addresses: ["10.9.9.9"] }] };
    this.#slices.set(name, slice);
    this.#event("ADDED", slice);
  }

  #event(type: string, object: Obj): void {
    const rv = Number(object.metadata.resourceVersion);
    this.#history.push({ rv, type, object });
    for (const w of this.#watchers) if (matches(object.metadata.labels, w.selector)) w.controller.enqueue(encoder.encode(JSON.stringify({ type, object }) + "\n"));
  }

  /** Forgets history: a watch from any version before the current one now gets 410 Gone. */
  compact(opts: { current?: boolean } = {}): void {
    // The current version, which a list returns, stays watchable, unless `current` (a list served stale from a cache).
    this.#compactedBelow = opts.current ? Number.MAX_SAFE_INTEGER : this.#rv;
    this.#history.length = 0;
  }

  /** Ends every open watch stream, as an API server restart or a network cut does. */
  dropWatches(): void {
    for (const w of this.#watchers) w.controller.close();
    this.#watchers.clear();
  }

  get openWatches(): number {
    return this.#watchers.size;
  }

  async #handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const body = req.method === "GET" ? undefined : ((await req.json()) as Obj);
    this.calls.push({ method: req.method, url: url.pathname + url.search, contentType: req.headers.get("content-type"), body });
    if (req.headers.get("authorization") !== `Bearer ${this.token}`) return status(401, "Unauthorized", "no or a wrong bearer token");
    const res = this.#route(req.method, url, body, req.headers.get("content-type"));
    const after = req.method === "GET" ? this.#afterGet.get(url.pathname) : undefined;
    if (after) {
      this.#afterGet.delete(url.pathname);
      after();
    }
    return res;
  }

  #route(method: string, url: URL, body: Obj | undefined, contentType: string | null): Response {
    const ns = `/namespaces/${this.namespace}`;
    const p = url.pathname;
    if (p === `/apis/discovery.k8s.io/v1${ns}/endpointslices` && method === "GET") {
      const selector = parseSelector(url.searchParams.get("labelSelector"));
      if (url.searchParams.get("watch") !== "1") {
        const items = [...this.#slices.values()].filter((s) => matches(s.metadata.labels, selector));
        return Response.json({ kind: "EndpointSliceList", apiVersion: "discovery.k8s.io/v1", metadata: { resourceVersion: String(this.#rv) }, items });
      }
      return this.#watch(selector, Number(url.searchParams.get("resourceVersion")));
    }
    const scale = new RegExp(`^/apis/apps/v1${ns}/deployments/([^/]+)/scale$`).exec(p);
    if (scale) {
      const d = this.deployments.get(scale[1]!);
      if (!d) return status(404, "NotFound", `deployments.apps "${scale[1]}" not found`);
      if (method === "PATCH") {
        if (contentType !== "application/merge-patch+json") return status(415, "UnsupportedMediaType", `the body of the request was in an unknown format: ${contentType}`);
        const rv = body?.metadata?.resourceVersion;
        if (rv !== undefined && rv !== String(d.resourceVersion))
          return status(409, "Conflict", `Operation cannot be fulfilled on deployments.apps "${scale[1]}": the object has been modified; please apply your changes to the latest version and try again`);
        this.setReplicas(scale[1]!, body!.spec.replicas);
      } else if (method !== "GET") return status(405, "MethodNotAllowed", method);
      return Response.json({ kind: "Scale", apiVersion: "autoscaling/v1", metadata: { name: scale[1], namespace: this.namespace, resourceVersion: String(d.resourceVersion) }, spec: { replicas: d.replicas }, status: { replicas: d.replicas } });
    }
    const pod = new RegExp(`^/api/v1${ns}/pods/([^/]+)$`).exec(p);
    if (pod) {
      // Pods as the test's kubelet publishes them (setEndpoints): only their annotations are kept, and only a merge patch of them is taken.
      const annotations = this.podAnnotations.get(pod[1]!);
      if (!annotations) return status(404, "NotFound", `pods "${pod[1]}" not found`);
      if (method !== "PATCH") return status(405, "MethodNotAllowed", method);
      if (contentType !== "application/merge-patch+json") return status(415, "UnsupportedMediaType", `the body of the request was in an unknown format: ${contentType}`);
      Object.assign(annotations, body?.metadata?.annotations ?? {});
      return Response.json({ apiVersion: "v1", kind: "Pod", metadata: { name: pod[1], namespace: this.namespace, annotations } });
    }
    for (const [prefix, kind, store] of [
      [`/api/v1${ns}/configmaps/`, "configmaps", this.configMaps],
      [`/apis/coordination.k8s.io/v1${ns}/leases/`, "leases.coordination.k8s.io", this.leases],
    ] as const) {
      if (!p.startsWith(prefix)) continue;
      const name = p.slice(prefix.length);
      const current = store.get(name);
      if (!current) return status(404, "NotFound", `${kind} "${name}" not found`);
      if (method === "PUT") {
        if (body?.metadata?.resourceVersion !== current.metadata.resourceVersion)
          return status(409, "Conflict", `Operation cannot be fulfilled on ${kind} "${name}": the object has been modified; please apply your changes to the latest version and try again`);
        this.#store(store, name, body!);
      } else if (method !== "GET") return status(405, "MethodNotAllowed", method);
      return Response.json(store.get(name));
    }
    return status(404, "NotFound", `the server could not find the requested resource (${method} ${p})`);
  }

  /** Stores a ConfigMap at a new resourceVersion (as a PUT, or `kubectl apply`, would). */
  putConfigMap(name: string, data: Record<string, string>): void {
    this.#store(this.configMaps, name, { apiVersion: "v1", kind: "ConfigMap", data });
  }

  /** Stores a Lease (as `kubectl apply` of the manifests does, with an empty spec). */
  putLease(name: string, spec: Obj = {}): void {
    this.#store(this.leases, name, { apiVersion: "coordination.k8s.io/v1", kind: "Lease", spec });
  }

  #store(store: Map<string, Obj>, name: string, object: Obj): void {
    store.set(name, { ...object, metadata: { ...object.metadata, name, namespace: this.namespace, resourceVersion: String(++this.#rv) } });
  }

  #watch(selector: Record<string, string>, from: number): Response {
    if (from < this.#compactedBelow) {
      if (this.goneAsHttp) return status(410, "Expired", `too old resource version: ${from} (${this.#compactedBelow})`);
      const gone = { type: "ERROR", object: { kind: "Status", apiVersion: "v1", status: "Failure", code: 410, reason: "Expired", message: `too old resource version: ${from} (${this.#compactedBelow})` } };
      return new Response(JSON.stringify(gone) + "\n", { headers: { "content-type": "application/json" } });
    }
    let watcher: Watcher;
    const stream = new ReadableStream<Uint8Array>({
      start: (controller) => {
        watcher = { selector, controller };
        for (const e of this.#history) if (e.rv > from && matches(e.object.metadata.labels, selector)) controller.enqueue(encoder.encode(JSON.stringify({ type: e.type, object: e.object }) + "\n"));
        this.#watchers.add(watcher);
      },
      cancel: () => void this.#watchers.delete(watcher),
    });
    return new Response(stream, { headers: { "content-type": "application/json" } });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.dropWatches();
    await this.server.stop(true);
  }
}
