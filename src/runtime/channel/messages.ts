import type { SerializedServeError } from "../../error.ts";
import type { MetricsSnapshot } from "../metrics/snapshot.ts";
import type { OutlierDetection, ProxyConfig, RouteConfig } from "../../config/schema.ts";

/**
 * Every message on a data socket (caller ⇄ replica), one discriminated union.
 * Encoded with the wire codec inside length-prefixed frames.
 */
export type DataMessage =
  /**
   * Call `m` (null: the function or `__call__`) with args `a`; `r` is the request id. `s`: stream the result.
   * `k`: keep the result here and answer a KeptRef (the caller forwards it to another call). A top-level
   * argument that is a KeptRef is fetched from its producer before the call runs. `x`: the request's
   * multiplexed model id. `tp`: the caller's W3C traceparent and `q` the ms the call waited in the
   * caller's queue (tracing on only).
   */
  | { t: "call"; id: number; m: string | null; a: unknown[]; r: string; s?: boolean; k?: boolean; x?: string; tp?: string; q?: number }
  /** Send the kept result `k` (answered with `ok` or `err`); it stays kept until released. */
  | { t: "fetch"; id: number; k: string }
  /** Drop the kept result `k`; no answer. */
  | { t: "release"; id: number; k: string }
  /** The caller gave up (timeout, client gone): abort the user code's signal. */
  | { t: "cancel"; id: number }
  /** Stream flow control: the caller can take `n` more chunks. */
  | { t: "credit"; id: number; n: number }
  /** `mm`: the model ids the replica has loaded (least recently used first), after a call that carried `x`. */
  | { t: "ok"; id: number; v: unknown; mm?: string[] }
  | { t: "err"; id: number; e: SerializedServeError }
  /** The replica is at maxOngoingRequests (or draining): try another. */
  | { t: "busy"; id: number }
  | { t: "chunk"; id: number; v: unknown }
  | { t: "end"; id: number }
  /**
   * The replica drained (its last message on this connection): every call it admitted here was answered
   * before this, so a call still unanswered never ran; send it to another replica (replica/farewell.ts).
   */
  | { t: "drained"; id: 0 };

export type { WireRequest } from "../../api/wire-request.ts";

/** An HTTP response as it travels back; a streamed body arrives as chunks. */
export interface WireResponse {
  status: number;
  headers: [string, string][];
  body: Uint8Array | null;
  /** The body follows as `chunk` messages (Uint8Array each). */
  streamed?: boolean;
}

/** The method name an ingress's `fetch` is called by over the wire. */
export const HTTP_METHOD = "__http__";

/** One replica as routers see it. */
export interface ReplicaInfo {
  id: string;
  socket: string;
}

/** What every caller needs to know of one deployment. */
export interface DeploymentRoute {
  replicas: ReplicaInfo[];
  maxOngoingRequests: number;
  maxQueuedRequests: number;
  /** The deployment's outlierDetection, when set (absent: the defaults). */
  outlierDetection?: OutlierDetection;
}

/** The versioned snapshot of one application's replica sets. */
export interface RoutingTable {
  version: number;
  deployments: Record<string, DeploymentRoute>;
  /**
   * Replicas (ids as in `replicas`) whose control link went silent (a node cut off): a
   * call still waiting on one will never be answered, so callers fail it (503) instead of
   * waiting on a data link the cut left half-open. The last few, so a caller that missed
   * a table still hears of it.
   */
  gone?: string[];
}

/** One application as a data-plane listener needs it: where it is served, its ingress, its replicas. */
export interface ProxyApp {
  name: string;
  routePrefix: string;
  ingress: string;
  table: RoutingTable;
}

/** What a data-plane listener routes by (a cluster proxy, or an ingress replica's own): every application and the split routes. */
export interface ProxySnapshot {
  apps: ProxyApp[];
  routes: RouteConfig[];
}

/** Main → replica, over the IPC channel. */
export type ControlToReplica =
  /** The first message a replica gets: what to run (kept off the command line, where `ps` shows it). */
  | { t: "start"; spec: ReplicaSpec }
  | { t: "routes"; table: RoutingTable }
  | { t: "reconfigure"; seq: number; userConfig: unknown }
  | { t: "health"; seq: number }
  | { t: "limits"; maxOngoingRequests: number }
  | { t: "drain"; timeoutS: number }
  /** Send a metrics snapshot now, then `done` (the admin API's /metrics asks listening ingress replicas). */
  | { t: "metrics-now"; seq: number }
  /** Stop taking data-plane connections and answer `done` once the requests held are answered (at most `timeoutS`, then 503). */
  | { t: "close-listener"; seq: number; timeoutS: number }
  /** To an ingress replica that listens on the data-plane port: every application's routes (its first one opens the listener). */
  | { t: "proxy-routes"; snapshot: ProxySnapshot };

/** Replica → main, over the IPC channel. */
export type ControlFromReplica =
  | { t: "ready"; socket: string }
  | { t: "failed"; error: SerializedServeError }
  | { t: "done"; seq: number; error?: SerializedServeError }
  | { t: "load"; ongoing: number; queued: number }
  /** About once a second: the replica's cumulative counters, for the admin API's /metrics and dashboard. */
  | { t: "metrics"; snapshot: MetricsSnapshot }
  /** A whole JSON log line (logging.format json) that the server writes to its stdout as is. */
  | { t: "log"; line: string }
  | { t: "drained" }
  /** An ingress replica's data-plane listener opened (true) or stopped taking connections (false). */
  | { t: "listening"; open: boolean };

/** How a replica is started: everything it needs, sent as its first control message. */
export interface ReplicaSpec {
  app: string;
  deployment: string;
  replicaId: string;
  /** Absolute path of the graph module and the export that holds the root. */
  modulePath: string;
  exportName: string;
  hash: string;
  /** The graph module's content hash when the deployment was planned ("" to skip the check). */
  fileHash: string;
  socket: string;
  userConfig?: unknown;
  maxOngoingRequests: number;
  sharedMemory: { enabled: boolean; thresholdBytes: number; arenaBytes: number; dir: string };
  /** Deployments of the application this replica runs in its own process when it calls them (colocate: true). */
  colocated?: { name: string; userConfig?: unknown }[];
  /** Set for an ingress replica that serves HTTP itself (proxy.location "ingress"): where to listen (SO_REUSEPORT) and the proxy's limits. */
  listen?: DataPlaneListen;
}

/** Where an ingress replica's data-plane listener binds, and the proxy settings it enforces. */
export interface DataPlaneListen {
  host: string;
  /** The concrete port the main process bound first (never 0: every listener must share one). */
  port: number;
  proxy: ProxyConfig;
}
