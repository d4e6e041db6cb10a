/**
 * The test's kubelet and ReplicaSet controller, beside the API server
 * stand-in (kube-api-standin.ts): when a Deployment's count changes there,
 * this starts or stops real `serve-bin replica` processes on 127.0.0.1 (one
 * per pod, each on its own ports) and publishes their EndpointSlices from
 * their readiness, as the kubelet's probes and the EndpointSlice controller
 * would. No real Kubernetes runs on these machines; this plays the parts of
 * it serve-bin relies on:
 *   - a container that exits is restarted in the same pod (restartPolicy
 *     Always), at once (Kubernetes backs off; time is not what is tested);
 *   - a lower count deletes pods not ready first, then those of lower
 *     `controller.kubernetes.io/pod-deletion-cost`, then the newest (the
 *     ReplicaSet's ranking, in that order), with SIGTERM;
 *   - a readiness probe fails when the pod answers other than 200, or not
 *     within PROBE_TIMEOUT_MS: the manifests give it healthCheckTimeoutS
 *     (30 s by default), so one slow answer of a loaded machine does not
 *     take a serving pod's endpoint out;
 *   - `losePod` is a node lost: the process is killed (-9, by pid), the pod
 *     and its endpoint go, and the ReplicaSet starts a replacement.
 * It only ever signals the processes it started.
 */
import type { Subprocess } from "bun";
import { readFileSync } from "node:fs";
import { POD_DELETION_COST } from "../src/cluster/kubernetes/client.ts";
import type { KubeApiStandIn } from "./kube-api-standin.ts";

/** How long a readiness probe waits for an answer (shorter than the manifests' timeoutSeconds, long enough for a loaded test machine). */
const PROBE_TIMEOUT_MS = 5000;

export interface Pod {
  name: string;
  deployment: string;
  linkPort: number;
  healthPort: number;
  proc: Subprocess<"ignore", "pipe", "pipe">;
  ready: boolean;
  restarts: number;
  deleting: boolean;
  out: string;
}

/** What a pod's container runs: argv for a pod's ports. */
export type PodCommand = (deployment: string, linkPort: number, healthPort: number) => string[];

/** Ports handed to pods, so no two pods share one. */
const handedOut = new Set<number>();

/**
 * A port free now on 127.0.0.1 for a pod (it keeps it across container
 * restarts). Taken below the kernel's ephemeral range (32768 and up here), so
 * a process that binds port 0 later (the proxy, another test) is never given
 * it while the pod restarts.
 */
function freePort(): number {
  for (;;) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    if (handedOut.has(port)) continue;
    try {
      Bun.listen({ hostname: "127.0.0.1", port, socket: { data() {} } }).stop(true);
    } catch {
      continue; // taken
    }
    handedOut.add(port);
    return port;
  }
}

export class TestKubelet implements AsyncDisposable {
  readonly pods: Pod[] = [];
  /** Pods deleted or lost, with what they printed (for a failing test's log). */
  readonly gone: Pod[] = [];
  /** What happened, in order: "start NAME", "exit NAME CODE", "delete NAME" (a test asserts on the order). */
  readonly events: string[] = [];
  /**
   * Pods whose process had already exited when the ReplicaSet deleted them, by the kernel's word (the pid
   * gone or a zombie): the event list alone can say otherwise, since this process may hear of an exit later.
   */
  readonly deadWhenDeleted = new Set<string>();
  #seq = 0;
  readonly #probe: ReturnType<typeof setInterval>;
  #probing = false;
  #closed = false;

  constructor(
    readonly api: KubeApiStandIn,
    readonly command: PodCommand,
    /** The container's environment, per Deployment (a pod's revision, as the manifests set it from its label). */
    readonly env: Record<string, string> | ((deployment: string) => Record<string, string>),
  ) {
    api.onScale = (name) => this.#reconcile(name);
    this.#probe = setInterval(() => void this.#probeAll(), 100);
  }

  /** Live pods of a Deployment (not being deleted). */
  of(deployment: string): Pod[] {
    return this.pods.filter((p) => p.deployment === deployment && !p.deleting);
  }

  #reconcile(deployment: string): void {
    if (this.#closed) return;
    const want = this.api.deployments.get(deployment)?.replicas ?? 0;
    const live = this.of(deployment);
    for (let i = live.length; i < want; i++) this.#create(deployment);
    // The ReplicaSet's ranking: pods not ready go first, then the lower pod-deletion-cost, then the newest.
    const cost = (p: Pod) => Number(this.api.podAnnotations.get(p.name)?.[POD_DELETION_COST] ?? 0);
    const doomed = [...live].sort((a, b) => Number(a.ready) - Number(b.ready) || cost(a) - cost(b) || this.pods.indexOf(b) - this.pods.indexOf(a)).slice(0, Math.max(0, live.length - want));
    for (const pod of doomed) {
      if (processEnded(pod.proc.pid)) this.deadWhenDeleted.add(pod.name);
      pod.deleting = true;
      this.events.push(`delete ${pod.name}`);
      pod.proc.kill("SIGTERM");
    }
    if (doomed.length) this.#publish(deployment);
  }

  #create(deployment: string): void {
    const pod = { name: `${deployment.slice(-6)}-p${++this.#seq}`, deployment, linkPort: freePort(), healthPort: freePort(), ready: false, restarts: 0, deleting: false, out: "" } as Pod;
    this.pods.push(pod);
    this.#run(pod);
  }

  #run(pod: Pod): void {
    this.events.push(`start ${pod.name}`);
    const proc = Bun.spawn(this.command(pod.deployment, pod.linkPort, pod.healthPort), { env: { ...process.env, ...(typeof this.env === "function" ? this.env(pod.deployment) : this.env) }, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    pod.proc = proc;
    for (const s of [proc.stdout, proc.stderr]) {
      void (async () => {
        const dec = new TextDecoder();
        for await (const chunk of s) pod.out += dec.decode(chunk);
      })();
    }
    void proc.exited.then((code) => {
      if (pod.proc !== proc) return;
      this.events.push(`exit ${pod.name} ${code ?? proc.signalCode}`);
      pod.ready = false;
      if (pod.deleting || this.#closed) {
        const i = this.pods.indexOf(pod);
        if (i >= 0) this.gone.push(...this.pods.splice(i, 1));
        return this.#publish(pod.deployment);
      }
      // restartPolicy: Always — the same pod, the same ports, a new process.
      pod.restarts++;
      this.#publish(pod.deployment);
      this.#run(pod);
    });
  }

  /** A node lost: the replica killed by pid (-9), its pod gone with its endpoint, and a replacement started. */
  losePod(pod: Pod): void {
    pod.deleting = true;
    this.events.push(`lose ${pod.name}`);
    process.kill(pod.proc.pid, "SIGKILL");
    this.gone.push(...this.pods.splice(this.pods.indexOf(pod), 1));
    this.#publish(pod.deployment);
    this.#reconcile(pod.deployment);
  }

  async #probeAll(): Promise<void> {
    if (this.#probing || this.#closed) return;
    this.#probing = true;
    try {
      const changed = new Set<string>();
      await Promise.all(
        this.pods.map(async (pod) => {
          if (pod.deleting) return;
          const ready = await fetch(`http://127.0.0.1:${pod.healthPort}/-/ready`, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) }).then((r) => r.status === 200, () => false);
          if (ready !== pod.ready && !pod.deleting) {
            pod.ready = ready;
            changed.add(pod.deployment);
          }
        }),
      );
      for (const d of changed) this.#publish(d);
    } finally {
      this.#probing = false;
    }
  }

  #publish(deployment: string): void {
    if (this.#closed) return;
    this.api.setEndpoints(
      deployment,
      // A pod being deleted stays in its slice as terminating until its process exits (the EndpointSlice controller's way).
      this.pods.filter((p) => p.deployment === deployment).map((p) => ({ name: p.name, ip: "127.0.0.1", port: p.linkPort, ready: p.ready, terminating: p.deleting })),
    );
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#closed = true;
    clearInterval(this.#probe);
    for (const p of this.pods) if (p.proc.exitCode === null && p.proc.signalCode === null) p.proc.kill("SIGKILL");
    await Promise.all(this.pods.map((p) => p.proc.exited));
  }
}

/** Whether a process has exited (reaped, or a zombie not yet reaped), from /proc. */
function processEnded(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) === "Z";
  } catch {
    return true;
  }
}
