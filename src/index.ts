/**
 * serve-bin: inference graphs for TypeScript, served by one binary.
 * Everything a graph module imports comes from here.
 */
// The package's declarations (types/) name Bun's and the fetch API's types: an app
// type-checks against them with @types/bun (a dependency), without DOM libs.
/// <reference types="bun" />

// Authoring a graph
export { deployment, Deployment, type DeploymentDef, type BoundClass } from "./api/deployment.ts";
export { InputNode } from "./api/input-node.ts";
export { DAGNode, FunctionNode, ClassNode, MethodNode, SelectNode } from "./api/nodes.ts";
export { DAGDriver, type DAGDriverOptions, type GraphRunner } from "./api/dag-driver.ts";
export type { DeploymentOptions } from "./config/schema.ts";

// Batching: callers send one item, the method gets an array
export { batch, setBatchOptions, type BatchDecorator, type BatchInput } from "./api/batch.ts";

// Model multiplexing: an LRU of models per replica, requests routed to a replica that has theirs
export { multiplexed, multiplexedModelId, MULTIPLEX_HEADER, type MultiplexOptions, type MultiplexDecorator } from "./api/multiplex.ts";

// Large results without copies: a typed array made in this replica's shared memory
export { sharedArray, type SharedArrayKind } from "./api/shared-array.ts";

// Calling other deployments
export { DeploymentResponse, type DeploymentHandle, type HandleOptions } from "./api/handle.ts";
export { requestContext, type RequestContext } from "./api/request-context.ts";

// HTTP adapters
export {
  rawRequest,
  jsonRequest,
  textRequest,
  binaryRequest,
  ndarrayRequest,
  zodRequest,
  type HttpAdapter,
  type NdArray,
  type DType,
} from "./api/adapters.ts";

// Errors
export { ServeError, type ServeErrorCode } from "./error.ts";
export { HttpError } from "./http-error.ts";

// zod, so a graph run by the binary needs no node_modules for it
export { z } from "zod";

// Local execution registers itself with the nodes.
import "./graph/local.ts";

// Running and building (the REP's serve.run / serve.pipeline.build)
export { serve } from "./serve.ts";
export { Application, type RunOptions, type IngressMethods } from "./http/application.ts";
