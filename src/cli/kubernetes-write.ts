/**
 * Writes what `kubernetesManifests` returns into the build directory: one
 * YAML file per group of objects, `kustomization.yaml`, and, the first time
 * only, the two token files the kustomization turns into Secrets (kept on a
 * rebuild, so running pods keep matching tokens; listed in a `.gitignore`).
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { stringify } from "yaml";
import type { ResolvedServeConfig, ServeConfig } from "../config/schema.ts";
import { toYAML } from "../config/yaml.ts";
import { UsageError } from "./args.ts";
import { PLANS_FILE, REVISIONS_FILE, type Revisions, type StoredPlans } from "../cluster/kubernetes/names.ts";
import { kubernetesManifests, TOKEN_FILES, type Autoscaler } from "./kubernetes-manifests.ts";

const HEAD = "# Written by `serve-bin build --target kubernetes`; apply with `kubectl apply -k <this directory>`.\n";

const AUTOSCALERS: Autoscaler[] = ["serve-bin", "hpa"];
/** A namespace's name: a DNS-1123 label. */
const NAMESPACE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** The flags of `build --target kubernetes` (image and output already checked by build). */
export interface KubernetesFlags {
  image?: string;
  output?: string;
  autoscaler?: string;
  namespace?: string;
  /** Appended to a refusal. */
  usage: string;
}

/** `build --target kubernetes`: DIR/*.yaml and DIR/kustomization.yaml for `config` as the containers read it. */
export function writeKubernetes(config: ServeConfig, flags: KubernetesFlags, codeVersions: Record<string, string> = {}, plans: StoredPlans = {}): number {
  const autoscaler = (flags.autoscaler ?? "serve-bin") as Autoscaler;
  if (!AUTOSCALERS.includes(autoscaler))
    throw new UsageError(`--autoscaler ${flags.autoscaler} is not known; it is serve-bin (the default: serve-bin's controller scales) or hpa (a HorizontalPodAutoscaler per deployment)${flags.usage}`);
  const namespace = flags.namespace ?? "serve-bin";
  if (!NAMESPACE.test(namespace)) throw new UsageError(`--namespace "${namespace}" is not a Kubernetes namespace name: lowercase letters, digits and "-", at most 63, starting and ending with a letter or digit${flags.usage}`);
  const [image, dir] = [flags.image!, flags.output!];
  const configYaml = toYAML(config);
  // The last build's revisions: a deployment whose revision changes keeps its old Deployment scalable by the controller.
  const revisionsFile = join(dir, REVISIONS_FILE);
  const previous = existsSync(revisionsFile) ? (JSON.parse(readFileSync(revisionsFile, "utf8")) as Revisions) : undefined;
  const { files, kustomization, revisions } = kubernetesManifests(config as unknown as ResolvedServeConfig, { image, configYaml, autoscaler, namespace, codeVersions, previous });
  mkdirSync(dir, { recursive: true });
  writeFileSync(revisionsFile, JSON.stringify(revisions, null, 2) + "\n");
  // The planned graphs of every code a listed revision runs (the last builds' kept here), for the controller to serve the previous code during a rollout.
  const plansFile = join(dir, PLANS_FILE);
  const known: StoredPlans = { ...(existsSync(plansFile) ? (JSON.parse(readFileSync(plansFile, "utf8")) as StoredPlans) : {}), ...plans };
  const listed = new Set(Object.values(revisions).flatMap((r) => Object.values(r.code ?? {})));
  const kept = JSON.stringify(Object.fromEntries(Object.entries(known).filter(([code]) => listed.has(code))));
  writeFileSync(plansFile, kept + "\n");
  (files["config.yaml"]![0] as { data: Record<string, string> }).data[PLANS_FILE] = kept;
  const yaml = (o: unknown) => stringify(o, { lineWidth: 0, aliasDuplicateObjects: false });
  for (const [file, objects] of Object.entries(files)) writeFileSync(join(dir, file), HEAD + objects.map(yaml).join("---\n"));
  writeFileSync(join(dir, "kustomization.yaml"), HEAD + yaml(kustomization));
  for (const file of Object.values(TOKEN_FILES)) {
    const path = join(dir, file);
    if (!existsSync(path)) writeFileSync(path, randomBytes(32).toString("hex"), { mode: 0o600 });
  }
  writeFileSync(join(dir, ".gitignore"), `# Secrets: keep out of version control.\n${Object.values(TOKEN_FILES).join("\n")}\n`);
  const n = Object.values(files).reduce((sum, o) => sum + o.length, 0) + 2;
  process.stderr.write(`serve-bin: wrote ${n} objects (${Object.keys(files).length} files, kustomization.yaml, 2 token files) to ${dir}; apply with kubectl apply -k ${dir} (namespace ${namespace}, which must exist)\n`);
  return 0;
}
