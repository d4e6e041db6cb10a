/**
 * Discovery from EndpointSlices: one list+watch over every replica Service's
 * slices (one label selector), turned into each Service's ready addresses
 * (`tcp://ip:port`, the replicas' link port).
 *
 * The watch resumes from the last resourceVersion it saw (events and
 * bookmarks) when the stream ends, as the API server ends every watch after
 * its timeout; a 410 Gone (that version is compacted away) makes it list
 * again from scratch. Errors back off from 100 ms to 5 s.
 */
import type { EndpointSlice } from "kubernetes-types/discovery/v1";
import { KubeApiError, type KubeClient, type WatchEvent } from "./client.ts";
import { KUBE_LABELS } from "./names.ts";

/** Ready addresses by Service name, each list sorted. */
export type ReadyAddresses = Map<string, string[]>;

/** Counters a log line or a test reads. */
export interface FeedStats {
  lists: number;
  watches: number;
  /** Lists caused by 410 Gone. */
  relists: number;
  errors: number;
  lastError?: string;
}

const BACKOFF_MS = [100, 200, 500, 1000, 2000, 5000];

/**
 * A slice's ready endpoints as link addresses (Kubernetes says a missing `ready` condition means ready),
 * or, with `terminating`, those of pods being deleted.
 */
function addressesOf(slice: EndpointSlice, portName: string, terminating = false): string[] {
  const port = (slice.ports ?? []).find((p) => p.name === portName)?.port ?? slice.ports?.[0]?.port;
  if (port == null || slice.addressType === "FQDN") return [];
  const out: string[] = [];
  for (const e of slice.endpoints ?? []) {
    if (terminating ? e.conditions?.terminating !== true : e.conditions?.ready === false) continue;
    for (const ip of e.addresses) out.push(`tcp://${ip.includes(":") ? `[${ip}]` : ip}:${port}`);
  }
  return out;
}

/**
 * Keeps `current` equal to the ready replicas the API server lists, and calls
 * `onChange` with the whole map whenever it changes.
 * @example new EndpointSliceFeed(client, REPLICA_SLICES_SELECTOR, (ready) => console.log(ready)).start()
 */
export class EndpointSliceFeed {
  readonly stats: FeedStats = { lists: 0, watches: 0, relists: 0, errors: 0 };
  #slices = new Map<string, EndpointSlice>();
  #current: ReadyAddresses = new Map();
  #abort = new AbortController();
  #loop: Promise<void> | null = null;

  constructor(
    readonly client: KubeClient,
    readonly labelSelector: string,
    readonly onChange: (ready: ReadyAddresses) => void,
    readonly portName = "link",
  ) {}

  /** The last ready addresses by Service. */
  get current(): ReadyAddresses {
    return this.#current;
  }

  /** Whether the pod at a link address is being deleted (its endpoint listed as terminating): it left the ready set on purpose. */
  terminating(address: string): boolean {
    for (const slice of this.#slices.values()) if (addressesOf(slice, this.portName, true).includes(address)) return true;
    return false;
  }

  /** The pod behind a link address (`tcp://ip:port`), as its slice's endpoint names it (`targetRef`), ready or not. */
  podOf(address: string): string | undefined {
    for (const slice of this.#slices.values()) {
      const port = (slice.ports ?? []).find((p) => p.name === this.portName)?.port ?? slice.ports?.[0]?.port;
      for (const e of slice.endpoints ?? []) {
        if (e.targetRef?.kind === "Pod" && e.targetRef.name && e.addresses.some((ip) => `tcp://${ip.includes(":") ? `[${ip}]` : ip}:${port}` === address)) return e.targetRef.name;
      }
    }
    return undefined;
  }

  start(): this {
    this.#loop ??= this.#run();
    return this;
  }

  /** Ends the watch; resolves once the loop has returned. */
  async stop(): Promise<void> {
    this.#abort.abort();
    await this.#loop;
  }

  #publish(): void {
    const next: ReadyAddresses = new Map();
    for (const slice of this.#slices.values()) {
      const service = slice.metadata?.labels?.[KUBE_LABELS.serviceName];
      if (!service) continue;
      next.set(service, [...(next.get(service) ?? []), ...addressesOf(slice, this.portName)].sort());
    }
    const key = (m: ReadyAddresses) => JSON.stringify([...m].sort());
    if (key(next) === key(this.#current)) return;
    this.#current = next;
    this.onChange(next);
  }

  /** Applies one event; returns false when the watch must start over with a list (410). */
  #apply(ev: WatchEvent<EndpointSlice>): boolean {
    if (ev.type === "ERROR") {
      if (ev.object.code === 410) return false;
      throw new KubeApiError(ev.object.code ?? 500, ev.object.reason ?? "Error", `watch: ${ev.object.message ?? "error event"}`);
    }
    const name = ev.object.metadata?.name ?? "";
    if (ev.type === "ADDED" || ev.type === "MODIFIED") this.#slices.set(name, ev.object);
    else if (ev.type === "DELETED") this.#slices.delete(name);
    if (ev.type !== "BOOKMARK") this.#publish();
    return true;
  }

  /** 410s in a row without an event between them; past the first, each relist waits (a stale list would otherwise loop hot). */
  #goneInARow = 0;

  /** The version is gone: list again (returns the version to watch from, null). */
  async #gone(signal: AbortSignal): Promise<null> {
    this.stats.relists++;
    if (this.#goneInARow++ > 0) await sleep(BACKOFF_MS[Math.min(this.#goneInARow - 2, BACKOFF_MS.length - 1)]!, signal);
    return null;
  }

  async #run(): Promise<void> {
    const signal = this.#abort.signal;
    let version: string | null = null;
    let failures = 0;
    while (!signal.aborted) {
      try {
        if (version === null) {
          const list = await this.client.listEndpointSlices(this.labelSelector);
          this.stats.lists++;
          this.#slices = new Map(list.items.map((s) => [s.metadata?.name ?? "", s]));
          version = list.resourceVersion;
          this.#publish();
        }
        this.stats.watches++;
        let events = 0;
        for await (const ev of this.client.watchEndpointSlices(this.labelSelector, version, signal)) {
          events++;
          failures = 0;
          if (ev.type !== "ERROR") this.#goneInARow = 0;
          if (!this.#apply(ev)) {
            version = await this.#gone(signal);
            break;
          }
          version = (ev.object as { metadata?: { resourceVersion?: string } }).metadata?.resourceVersion ?? version;
        }
        // A stream that ends without a single event is not hammered again at once.
        if (events === 0) await sleep(BACKOFF_MS[Math.min(failures++, BACKOFF_MS.length - 1)]!, signal);
      } catch (e) {
        if (signal.aborted) break;
        if (e instanceof KubeApiError && e.status === 410) {
          version = await this.#gone(signal);
          continue;
        }
        this.stats.errors++;
        this.stats.lastError = (e as Error).message;
        await sleep(BACKOFF_MS[Math.min(failures++, BACKOFF_MS.length - 1)]!, signal);
      }
    }
  }
}

/** Waits `ms`, or less when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((done) => {
    const t = setTimeout(done, ms);
    signal.addEventListener("abort", () => (clearTimeout(t), done()), { once: true });
  });
}
