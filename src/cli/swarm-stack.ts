/**
 * `serve-bin build --target swarm`: the built config as a Docker Swarm stack
 * (SPEC §9). A pure function from the config to the stack file's object; the
 * build command writes it as DIR/stack.yml for `docker stack deploy`.
 *
 * One service per role, each task one container of the graph's image:
 *   - `controller` (one, on a manager: it reads the engine's tasks through the
 *     manager's socket), with the admin API published in host mode;
 *   - `proxy`, the HTTP ingress, published in host mode (the swarm's routing
 *     mesh needs IPVS, which these machines lack), at most one per node;
 *   - one `replica` service per deployment, `endpoint_mode: dnsrr` so that
 *     `tasks.<service>` names each task and callers route to task addresses.
 * Every link between them is TCP with the cluster token, a Swarm secret.
 *
 * The role flags (src/cli/roles/*, README "Run on a cluster"):
 *   serve-bin controller --config F --engine swarm --state-dir D --listen tcp://0.0.0.0:7070 --port 8000 --admin-host 0.0.0.0 --admin-port 8265 --admin-token-file S
 *   serve-bin proxy      --config F --controller tcp://controller:7070 --host 0.0.0.0 --port P --dns-fallback
 *   serve-bin replica    --app A --deployment N --listen tcp://0.0.0.0:7000 --controller tcp://controller:7070 --health-port 8000 --drain-timeout-s G
 * Each role serves `/-/healthz` (alive) and `/-/ready` (constructed,
 * configured, has a routing snapshot, not draining) on its HTTP port (8000;
 * the proxy's is proxy.port), which the healthcheck probes, and drains on
 * SIGTERM within its stop_grace_period. A replica's spec (graph, userConfig)
 * comes from the controller, so it needs no config file of its own.
 */
import { swarmResources } from "./resources.ts";
import type { DeploymentConfig, ResolvedServeConfig } from "../config/schema.ts";

/** What the stack needs besides the config. */
export interface SwarmOptions {
  /** The image with serve-bin and the graph (e.g. `registry.example/my-graph:1`). */
  image: string;
  /** Name of the Swarm config (a file in the build directory) that carries the serve-bin config. */
  configFile: string;
  /** Where the graph's directory is in the image (`--app-root`, default /app): import paths must stay under it. */
  appRoot?: string;
}

/** Where things are inside every container. */
export const SWARM_PATHS = {
  config: "/etc/serve-bin/serve.yaml",
  state: "/var/lib/serve-bin",
  tokenSecret: "serve-bin-cluster-token",
  adminTokenSecret: "serve-bin-admin-token",
  network: "serve-bin",
  controlPort: 7070,
  replicaPort: 7000,
  healthPort: 8000,
} as const;

/** Docker's SIGKILL comes this long after the drain timeout, as the local supervisor does it. */
const KILL_MARGIN_S = 2;

type Obj = Record<string, unknown>;

/**
 * The Swarm service name of a deployment: DNS-safe (lowercase letters,
 * digits, `-`), unique within the stack (a clash between two names that
 * normalise alike gets a numeric suffix).
 * @example serviceName("default", "Model_1") // "default-model-1"
 */
export function serviceName(app: string, deployment: string): string {
  return `${app}-${deployment}`
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 50);
}

/** The replica count a service starts with: the configured one, or autoscaling's minimum. */
function initialReplicas(d: DeploymentConfig): number {
  return d.numReplicas === "auto" ? (d.autoscalingConfig?.minReplicas ?? 1) : d.numReplicas;
}

function healthcheck(periodS: number, timeoutS: number, port: number = SWARM_PATHS.healthPort): Obj {
  return {
    test: ["CMD", "/usr/local/bin/serve-bin", "healthcheck", "--port", String(port)],
    interval: `${periodS}s`,
    timeout: `${timeoutS}s`,
    retries: 3,
    start_period: "60s",
  };
}

/** What every service shares: image, network, token, config, and labels naming its role. */
function service(opts: SwarmOptions, role: string, labels: Obj, own: { command: string[]; environment?: Obj; secrets?: string[]; deploy: Obj } & Obj): Obj {
  const { environment, deploy, ...rest } = own;
  return {
    image: opts.image,
    networks: [SWARM_PATHS.network],
    secrets: [SWARM_PATHS.tokenSecret],
    configs: [{ source: "serve-bin-config", target: SWARM_PATHS.config, mode: 0o444 }],
    ...rest,
    environment: {
      ...environment,
      SERVE_BIN_CLUSTER_TOKEN_FILE: `/run/secrets/${SWARM_PATHS.tokenSecret}`,
      // The task knows its own stack and service: swarm fills these templates in.
      SERVE_BIN_STACK: '{{index .Service.Labels "com.docker.stack.namespace"}}',
      SERVE_BIN_SERVICE: "{{.Service.Name}}",
    },
    deploy: { endpoint_mode: "dnsrr", ...deploy, labels: { "serve-bin.role": role, ...labels } },
  };
}

const controlAddress = `tcp://controller:${SWARM_PATHS.controlPort}`;

/**
 * The stack file's object for `config` (applications already resolved, as `build` writes them).
 * @example Bun.write("out/stack.yml", stringify(swarmStack(config, { image: "me/graph:1", configFile: "./serve.yaml" })))
 */
export function swarmStack(config: ResolvedServeConfig, opts: SwarmOptions): Obj {
  const { config: configPath, state, tokenSecret, adminTokenSecret } = SWARM_PATHS;
  const edgeGrace = `${config.proxy.shutdownTimeoutS + KILL_MARGIN_S}s`;
  const services: Obj = {
    controller: service(opts, "controller", {}, {
      command: [
        "controller", "--config", configPath, "--app-dir", opts.appRoot ?? "/app", "--engine", "swarm", "--state-dir", state, "--listen", `tcp://0.0.0.0:${SWARM_PATHS.controlPort}`,
        "--port", String(SWARM_PATHS.healthPort), "--admin-host", "0.0.0.0", "--admin-port", String(config.admin.port), "--admin-token-file", `/run/secrets/${adminTokenSecret}`,
      ],
      secrets: [tokenSecret, adminTokenSecret],
      // The engine's socket is root's: the controller (only it) runs as root to reach it.
      user: "0:0",
      // The engine's API (tasks, scaling) through the manager's socket; the applied config and userConfig survive a restart in the volume.
      volumes: ["/var/run/docker.sock:/var/run/docker.sock", `serve-bin-state:${state}`],
      ports: [{ target: config.admin.port, published: config.admin.port, protocol: "tcp", mode: "host" }],
      healthcheck: healthcheck(10, 5),
      stop_grace_period: edgeGrace,
      deploy: { replicas: 1, placement: { constraints: ["node.role == manager"] } },
    }),
    proxy: service(opts, "proxy", {}, {
      command: ["proxy", "--config", configPath, "--controller", controlAddress, "--host", "0.0.0.0", "--port", String(config.proxy.port), "--dns-fallback"],
      ports: [{ target: config.proxy.port, published: config.proxy.port, protocol: "tcp", mode: "host" }],
      healthcheck: healthcheck(10, 5, config.proxy.port),
      stop_grace_period: edgeGrace,
      // A port published in host mode is bound once per node: at most one proxy per node.
      deploy: { replicas: 1, placement: { max_replicas_per_node: 1 }, update_config: { order: "stop-first" } },
    }),
  };

  const taken = new Set(Object.keys(services));
  for (const app of config.applications) {
    for (const d of app.deployments) {
      let name = serviceName(app.name, d.name);
      for (let i = 2; taken.has(name); i++) name = `${serviceName(app.name, d.name)}-${i}`;
      taken.add(name);
      services[name] = service(opts, "replica", { "serve-bin.app": app.name, "serve-bin.deployment": d.name }, {
        command: [
          "replica", "--app", app.name, "--deployment", d.name, "--listen", `tcp://0.0.0.0:${SWARM_PATHS.replicaPort}`, "--controller", controlAddress,
          "--health-port", String(SWARM_PATHS.healthPort), "--drain-timeout-s", String(d.gracefulShutdownTimeoutS),
        ],
        environment: { ...d.env },
        healthcheck: healthcheck(d.healthCheckPeriodS, d.healthCheckTimeoutS),
        // The replica drains for gracefulShutdownTimeoutS after SIGTERM; the kill comes only after that.
        stop_grace_period: `${d.gracefulShutdownTimeoutS + KILL_MARGIN_S}s`,
        deploy: {
          replicas: initialReplicas(d),
          // A rolling restart starts the new task before the old one drains, as the local runtime does.
          update_config: { order: "start-first", parallelism: 1 },
          // A replica exits 0 only when the controller drained it (scaling down): Swarm must not bring that one back.
          restart_policy: { condition: "on-failure" },
          ...(d.resources ? { resources: swarmResources(d.resources) } : {}),
        },
      });
    }
  }

  return {
    version: "3.8",
    services,
    networks: { [SWARM_PATHS.network]: { driver: "overlay", attachable: true } },
    volumes: { "serve-bin-state": {} },
    configs: { "serve-bin-config": { file: opts.configFile } },
    // Made before the deploy, e.g. `openssl rand -hex 32 | docker secret create serve-bin-cluster-token -`.
    secrets: { [SWARM_PATHS.tokenSecret]: { external: true }, [SWARM_PATHS.adminTokenSecret]: { external: true } },
  };
}
