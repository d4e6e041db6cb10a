/**
 * Scaling on Docker Swarm: a deployment is one service of the stack (labels
 * `serve-bin.app`, `serve-bin.deployment`, and the stack's namespace), and
 * its replica count is what the controller's claims add up to. Swarm starts,
 * restarts and reschedules the tasks; the controller never spawns one.
 * Updates to one service are serialised and always carry the latest count.
 */
import type { Scaler } from "../remote-engine.ts";
import { DockerApi, type SwarmService } from "./docker-api.ts";

/** A version conflict (another update won the race) is retried this many times. */
const RETRIES = 5;

export class SwarmScaler implements Scaler {
  readonly #want = new Map<string, { app: string; deployment: string; replicas: number; how: "atLeast" | "exactly" }>();
  readonly #busy = new Set<string>();
  /** The last error per deployment, for the controller's log. */
  readonly errors = new Map<string, string>();

  /** @param stack the stack's namespace (`docker stack deploy … NAME`); empty: any stack. */
  constructor(
    readonly api: DockerApi,
    readonly stack: string,
    readonly log: (line: string) => void = (l) => console.error(l),
  ) {}

  scale(app: string, deployment: string, replicas: number, how: "atLeast" | "exactly"): void {
    const key = `${app}/${deployment}`;
    const before = this.#want.get(key);
    // Within one turn a stop and a start (a replacement) net out; an exact count is not undone by a later "at least".
    this.#want.set(key, { app, deployment, replicas, how: before?.how === "exactly" && this.#busy.has(key) ? "exactly" : how });
    if (this.#busy.has(key)) return;
    this.#busy.add(key);
    // Coalesces the claims of one reconcile pass into one update.
    setTimeout(() => void this.#drive(key), 0);
  }

  /** The service of a deployment in this stack. */
  async find(app: string, deployment: string): Promise<SwarmService | undefined> {
    const labels = [`serve-bin.app=${app}`, `serve-bin.deployment=${deployment}`];
    if (this.stack) labels.push(`com.docker.stack.namespace=${this.stack}`);
    return (await this.api.services(labels))[0];
  }

  async #drive(key: string): Promise<void> {
    try {
      for (let attempt = 0; attempt < RETRIES; attempt++) {
        const want = this.#want.get(key)!;
        try {
          const svc = await this.find(want.app, want.deployment);
          if (!svc) throw new Error(`no service labelled serve-bin.app=${want.app}, serve-bin.deployment=${want.deployment}${this.stack ? ` in stack ${this.stack}` : ""}`);
          const now = svc.Spec.Mode.Replicated?.Replicas ?? 0;
          if (now !== want.replicas && (want.how === "exactly" || now < want.replicas)) {
            await this.api.setReplicas(svc, want.replicas);
            this.log(`serve-bin: ${svc.Spec.Name} scaled to ${want.replicas}`);
          }
          this.errors.delete(key);
          // A newer count arrived while this one was sent: go again.
          if (this.#want.get(key)!.replicas === want.replicas) return;
          attempt = -1;
        } catch (e) {
          this.errors.set(key, (e as Error).message);
          if (attempt === RETRIES - 1) this.log(`serve-bin: cannot scale ${key}: ${(e as Error).message}`);
          await Bun.sleep(200 * (attempt + 1));
        }
      }
    } finally {
      this.#busy.delete(key);
    }
  }
}
