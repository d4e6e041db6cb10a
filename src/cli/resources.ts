/**
 * A deployment's `resources` as each cluster engine spells them: a
 * container's requests and limits on Kubernetes (the GPU as the
 * `nvidia.com/gpu` extended resource, which Kubernetes takes in limits only),
 * `deploy.resources` on Swarm. Nothing is written when the config states
 * nothing.
 */
import type { ResourceRequirements } from "kubernetes-types/core/v1";
import type { DeploymentConfig } from "../config/schema.ts";

type Resources = NonNullable<DeploymentConfig["resources"]>;

/** The extended resource NVIDIA's device plugin advertises. */
export const GPU_RESOURCE = "nvidia.com/gpu";

const isEmpty = (r: Resources | undefined): r is undefined => !r || (r.cpu === undefined && r.memory === undefined && r.gpu === undefined);

/**
 * Kubernetes: cpu and memory both requested and limited to the same amount
 * (a replica gets what it asked for, and no more); a GPU count as a limit.
 * @example kubeResources({ cpu: "500m", memory: "512Mi", gpu: 1 }) // { requests: { cpu: "500m", memory: "512Mi" }, limits: { cpu: "500m", memory: "512Mi", "nvidia.com/gpu": "1" } }
 */
export function kubeResources(r: Resources | undefined): ResourceRequirements | undefined {
  if (isEmpty(r)) return undefined;
  const sized: Record<string, string> = {};
  if (r.cpu !== undefined) sized.cpu = r.cpu;
  if (r.memory !== undefined) sized.memory = r.memory;
  const limits = { ...sized, ...(r.gpu ? { [GPU_RESOURCE]: String(r.gpu) } : {}) };
  return { ...(Object.keys(sized).length ? { requests: sized } : {}), ...(Object.keys(limits).length ? { limits } : {}) };
}

/** A CPU quantity as Swarm's decimal cores ("500m" → "0.5"). */
const cpus = (cpu: string) => (cpu.endsWith("m") ? String(Number(cpu.slice(0, -1)) / 1000) : cpu);

/**
 * Swarm: the same amounts as limits and reservations; GPUs as a generic
 * resource the nodes must advertise (dockerd's `node-generic-resources`).
 * @example swarmResources({ cpu: "500m", memory: "512Mi" }) // { limits: { cpus: "0.5", memory: "512Mi" }, reservations: { cpus: "0.5", memory: "512Mi" } }
 */
export function swarmResources(r: Resources | undefined): Record<string, unknown> | undefined {
  if (isEmpty(r)) return undefined;
  const sized: Record<string, string> = {};
  if (r.cpu !== undefined) sized.cpus = cpus(r.cpu);
  if (r.memory !== undefined) sized.memory = r.memory;
  const gpus = r.gpu ? { generic_resources: [{ discrete_resource_spec: { kind: "NVIDIA-GPU", value: r.gpu } }] } : {};
  return { ...(Object.keys(sized).length ? { limits: sized } : {}), reservations: { ...sized, ...gpus } };
}
