/**
 * Replica ids, one format and one parser: `<deployment>#<index>`. A replica
 * restarted in place keeps its id; its restarts are counted beside it.
 */
export type ReplicaId = string & { readonly __brand: "ReplicaId" };

/** @example formatReplicaId("Model", 2) // "Model#2" */
export function formatReplicaId(deployment: string, index: number): ReplicaId {
  return `${deployment}#${index}` as ReplicaId;
}

/** @example parseReplicaId("Model_1#0") // { deployment: "Model_1", index: 0 } */
export function parseReplicaId(id: string): { deployment: string; index: number } | null {
  const m = /^(.+)#(\d+)$/.exec(id);
  return m ? { deployment: m[1]!, index: Number(m[2]) } : null;
}
