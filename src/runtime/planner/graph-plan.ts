import type { DeploymentOptions } from "../../config/schema.ts";
import { maxBatchSizeOf } from "../../api/batch.ts";
import type { ServableGraph } from "../../graph/application.ts";
import { describeGraph, type GraphView } from "../../graph/describe.ts";

/** One deployment of a planned graph, as data: what the code says of it. */
export interface PlannedDeployment {
  name: string;
  kind: "function" | "class";
  /** What a handle to it may call. */
  methods: string[];
  /** The options set in code (`deployment(…, options)`, `.options()`): the layer under the config file's. */
  options: DeploymentOptions;
  /** The largest maxBatchSize of its batched methods (0: none): maxOngoingRequests is kept at least this. */
  batchFloor: number;
}

/**
 * A bound graph as plain data: all the server keeps of a graph module. It
 * crosses from the planning process by structured clone, so it holds no
 * node, class or function, and a PATCH re-resolves from it without importing.
 */
export interface GraphPlan {
  /** The IR hash: what every replica must rebuild identically. */
  hash: string;
  /** The deployment the proxy calls. */
  ingress: string;
  /** In the IR's order (post-order of first appearance). */
  deployments: PlannedDeployment[];
  /** The graph as drawn by the dashboard. */
  view: GraphView;
}

/** The data of a servable graph: read once, where its module was imported. */
export function graphPlanOf(graph: ServableGraph): GraphPlan {
  const deployments = [...graph.ir.deployments.values()].map((d) => ({
    name: d.name,
    kind: d.kind,
    methods: [...d.methods],
    options: { ...d.def.options },
    batchFloor: maxBatchSizeOf(d.def.target as Function),
  }));
  return { hash: graph.ir.hash, ingress: graph.ingress, deployments, view: describeGraph(graph) };
}
