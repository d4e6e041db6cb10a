import { mkdirSync, writeFileSync } from "node:fs";
import { basename, dirname, join, relative, resolve } from "node:path";
import { stringify } from "yaml";
import { ServeError } from "../error.ts";
import { parseConfig, type ResolvedServeConfig, type ServeConfig } from "../config/schema.ts";
import { toYAML } from "../config/yaml.ts";
import { planApp } from "../runtime/plan-app.ts";
import type { StoredPlans } from "../cluster/kubernetes/names.ts";
import { relativeImport } from "../http/application.ts";
import { parse, UsageError } from "./args.ts";
import { swarmStack } from "./swarm-stack.ts";
import { writeKubernetes } from "./kubernetes-write.ts";

const USAGE = "serve-bin build <graph.ts[:export]>... [-o app.yaml]\n       serve-bin build <graph.ts[:export]>... --target swarm --image IMAGE -o DIR [--app-dir DIR] [--app-root /app]\n       serve-bin build <graph.ts[:export]>... --target kubernetes --image IMAGE -o DIR [--namespace NS] [--autoscaler serve-bin|hpa] [--app-dir DIR] [--app-root /app]";
const TARGETS = ["swarm", "kubernetes"];
/** A Docker image reference: [registry[:port]/]path[:tag][@sha256:digest], path lowercase. */
const IMAGE = /^(?:[A-Za-z0-9.-]+(?::\d+)?\/)?[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*(?::\w[\w.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$/;

/** What `--target` changes: where the files go and how import paths are written. */
interface Output {
  /** The directory import paths are relative to (local build), or null (cluster build: absolute paths in the image). */
  importBase: string;
  importPath(file: string): string;
}

/** Application name for a target: `default` alone; else the export, or the file's stem for a default export. */
function appName(target: string, single: boolean): string {
  if (single) return "default";
  const m = /^(.*?)(?::([A-Za-z_$][\w$]*))?$/.exec(target)!;
  return m[2] && m[2] !== "default" ? m[2] : basename(m[1]!).replace(/\.[^.]+$/, "");
}

/** `serve-bin build`: the config of every target with every field's effective value. */
export async function buildCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    { output: { type: "string", short: "o" }, target: { type: "string" }, image: { type: "string" }, "app-dir": { type: "string" }, "app-root": { type: "string" }, autoscaler: { type: "string" }, namespace: { type: "string" } },
    USAGE,
  );
  if (positionals.length === 0) throw new UsageError(`build takes at least one graph module\nusage: ${USAGE}`);
  const cluster = values.target !== undefined;
  const out = cluster ? clusterOutput(values, positionals) : localOutput(values.output);
  const names = new Map<string, string>();
  const applications = [];
  /** Each application's code hash: part of its deployments' revisions on Kubernetes. */
  const codeVersions: Record<string, string> = {};
  /** Each code hash's planned graph, where the image has it: a rollout on Kubernetes serves the previous code from its plan. */
  const plans: StoredPlans = {};
  for (const target of positionals) {
    const name = appName(target, positionals.length === 1);
    const clash = names.get(name);
    if (clash) throw new UsageError(`${clash} and ${target} would both be named "${name}"; export the graphs under different names (graph.ts:name)`);
    names.set(name, target);
    const file = target.replace(/:[A-Za-z_$][\w$]*$/, "");
    const local = relativeImport(out.importBase, resolve(file)) + target.slice(file.length);
    try {
      // Planned from the local file; the path written is where the output finds it (the same, unless in an image).
      const planned = await planApp({ name, importPath: local, deployments: [] }, out.importBase, "/");
      planned.config.importPath = out.importPath(resolve(file)) + target.slice(file.length);
      applications.push(planned.config);
      codeVersions[name] = planned.codeVersion;
      if (values.target === "kubernetes") plans[planned.codeVersion] = { modulePath: out.importPath(resolve(file)), exportName: planned.exportName, fileHash: planned.fileHash, graph: planned.graph };
    } catch (e) {
      if (e instanceof ServeError) throw new UsageError(`${target}: ${e.message}`);
      throw e;
    }
  }
  // Still written (the file is the place to fix it), but it would not run as it is.
  const byPrefix = new Map<string, string>();
  for (const a of applications) {
    const other = byPrefix.get(a.routePrefix);
    if (other) process.stderr.write(`serve-bin: warning: applications ${other} and ${a.name} both serve ${a.routePrefix}; give each its own routePrefix in the file before running it\n`);
    else byPrefix.set(a.routePrefix, a.name);
  }
  const base = parseConfig({});
  if (!base.ok) throw new Error("default config is invalid");
  const config = { ...base.value, applications } as unknown as ServeConfig;
  if (values.target === "kubernetes") return writeKubernetes(inCluster(config), { ...values, usage: `\nusage: ${USAGE}` }, codeVersions, plans);
  if (cluster) return writeCluster(config, values.image!, values.output!, values["app-root"]);
  const yaml = toYAML(config);
  if (values.output) {
    writeFileSync(values.output, yaml);
    process.stderr.write(`serve-bin: wrote ${values.output} (${applications.length} application${applications.length === 1 ? "" : "s"})\n`);
  } else process.stdout.write(yaml);
  return 0;
}

function localOutput(output: string | undefined): Output {
  const base = output ? dirname(resolve(output)) : process.cwd();
  return { importBase: base, importPath: (file) => relativeImport(base, file) };
}

/**
 * `--target swarm`: the graph's directory (`--app-dir`, default the first
 * graph's) is copied into the image at `--app-root` (default /app), so import
 * paths are written as absolute paths in the image.
 */
function clusterOutput(values: { target?: string; image?: string; output?: string; "app-dir"?: string; "app-root"?: string; autoscaler?: string; namespace?: string }, targets: string[]): Output {
  const usage = `\nusage: ${USAGE}`;
  if (!TARGETS.includes(values.target!)) throw new UsageError(`--target ${values.target} is not known; the targets are: ${TARGETS.join(", ")}${usage}`);
  if (!values.image) throw new UsageError(`--target ${values.target} needs --image: the image with serve-bin and this graph (see README "Run on a cluster")${usage}`);
  if (!IMAGE.test(values.image)) throw new UsageError(`--image "${values.image}" is not an image reference like registry.example:5000/team/graph:1 (lowercase path, optional tag or digest)${usage}`);
  if (!values.output) throw new UsageError(`--target ${values.target} needs -o DIR: the directory to write ${values.target === "swarm" ? "stack.yml and serve.yaml" : "the manifests and kustomization.yaml"} into${usage}`);
  for (const flag of ["autoscaler", "namespace"] as const) {
    if (values[flag] !== undefined && values.target !== "kubernetes") throw new UsageError(`--${flag} is for --target kubernetes only${usage}`);
  }
  const root = values["app-root"] ?? "/app";
  if (!root.startsWith("/")) throw new UsageError(`--app-root takes an absolute path inside the image, not "${root}"${usage}`);
  const appDir = resolve(values["app-dir"] ?? dirname(resolve(targets[0]!.replace(/:[A-Za-z_$][\w$]*$/, ""))));
  return {
    importBase: appDir,
    importPath(file) {
      const rel = relative(appDir, file);
      if (rel.startsWith("..")) throw new UsageError(`${file} is outside the app directory ${appDir}, which is what goes into the image; give --app-dir a directory that holds every graph${usage}`);
      return `${root.replace(/\/+$/, "")}/${rel.split("\\").join("/")}`;
    },
  };
}

/** The config as containers read it: inside one the admin API must listen beyond loopback (its token is a secret), and 500s carry no stacks. */
function inCluster(config: ServeConfig): ServeConfig {
  return { ...config, admin: { ...config.admin, host: "0.0.0.0" }, proxy: { ...config.proxy, errorDetail: "message" } } as ServeConfig;
}

/** Writes DIR/serve.yaml (the config, as the controller and replicas read it in their containers) and DIR/stack.yml. */
function writeCluster(config: ServeConfig, image: string, dir: string, appRoot = "/app"): number {
  const cluster = inCluster(config);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "serve.yaml"), toYAML(cluster));
  const stack = swarmStack(cluster as unknown as ResolvedServeConfig, { image, configFile: "./serve.yaml", appRoot });
  const head = [
    "# Written by `serve-bin build --target swarm`. Deploy with:",
    "#   openssl rand -hex 32 | docker secret create serve-bin-cluster-token -",
    "#   openssl rand -hex 32 | docker secret create serve-bin-admin-token -",
    "#   docker stack deploy -c stack.yml NAME",
    "",
  ].join("\n");
  writeFileSync(join(dir, "stack.yml"), head + stringify(stack));
  const n = Object.keys(stack.services as object).length;
  process.stderr.write(`serve-bin: wrote ${join(dir, "stack.yml")} (${n} services) and ${join(dir, "serve.yaml")}\n`);
  return 0;
}
