/**
 * The few Docker Engine API calls the Swarm engine makes, over the manager's
 * unix socket (`/var/run/docker.sock`, mounted into the controller's task).
 * Errors say which call failed and what the daemon answered.
 */
import { ServeError } from "../../error.ts";

/** Engine API version: Docker 20.10 and later speak it. */
const API = "/v1.41";

/** What the controller reads of a service. */
export interface SwarmService {
  ID: string;
  Version: { Index: number };
  Spec: { Name: string; Labels?: Record<string, string>; Mode: { Replicated?: { Replicas: number } } } & Record<string, unknown>;
}

/** What the controller reads of a task. */
export interface SwarmTask {
  ID: string;
  NodeID?: string;
  Slot?: number;
  Status: { State: string; Err?: string };
  DesiredState: string;
  NetworksAttachments?: { Network: { Spec: { Name: string } }; Addresses: string[] }[];
}

export class DockerApi {
  constructor(readonly socket = "/var/run/docker.sock") {}

  async #call<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(`http://docker${API}${path}`, {
        method,
        unix: this.socket,
        headers: body === undefined ? {} : { "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      } as RequestInit);
    } catch (e) {
      throw new ServeError("unavailable", `the Docker engine at ${this.socket} did not answer ${method} ${path}: ${(e as Error).message}; mount the manager's /var/run/docker.sock into the controller`);
    }
    const text = await res.text();
    if (!res.ok) {
      let message = text;
      try {
        message = (JSON.parse(text) as { message?: string }).message ?? text;
      } catch {
        // not JSON: the text itself
      }
      throw new ServeError(res.status === 404 ? "not_found" : "unavailable", `Docker ${method} ${path} answered ${res.status}: ${message}`);
    }
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /** Services whose labels include every `key=value` given. */
  services(labels: string[]): Promise<SwarmService[]> {
    return this.#call("GET", `/services?filters=${encodeURIComponent(JSON.stringify({ label: labels }))}`);
  }

  service(id: string): Promise<SwarmService> {
    return this.#call("GET", `/services/${encodeURIComponent(id)}`);
  }

  /** Sets a replicated service's replica count; `version` is the index read with it (a concurrent change answers 500/409: read again). */
  async setReplicas(service: SwarmService, replicas: number): Promise<void> {
    const spec = { ...service.Spec, Mode: { Replicated: { Replicas: replicas } } };
    await this.#call("POST", `/services/${encodeURIComponent(service.ID)}/update?version=${service.Version.Index}`, spec);
  }

  /** The tasks of one service that the orchestrator wants running. */
  tasks(serviceId: string): Promise<SwarmTask[]> {
    return this.#call("GET", `/tasks?filters=${encodeURIComponent(JSON.stringify({ service: [serviceId], "desired-state": ["running"] }))}`);
  }
}
