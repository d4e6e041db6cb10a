import { ServeError } from "../error.ts";
import { deploymentOptionsSchema, ONE_OFF, type DeploymentOptions } from "../config/schema.ts";

const NO_OPTIONS: DeploymentOptions = Object.freeze({});

/** A plain object: anything else (null, an array, a class instance) goes to the schema, which says what is wrong. */
function isPlain(v: unknown): v is Record<string, unknown> {
  if (typeof v !== "object" || v === null) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/**
 * Validates deployment options written in code with the same zod schema as
 * the config file, and keeps only the keys the user gave (defaults are
 * applied later, when the config is built).
 */
export function checkDeploymentOptions(options: DeploymentOptions, deployment: string): DeploymentOptions {
  // No option given (most deployment() calls): nothing to check, and the schema is not built
  // (building and first running it costs ~10 ms of CPU in every process that imports the graph).
  if (isPlain(options) && Object.values(options).every((v) => v === undefined)) return NO_OPTIONS;
  const parsed = deploymentOptionsSchema().safeParse(options, ONE_OFF);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => ({ path: i.path.map((p) => (typeof p === "symbol" ? String(p) : p)), message: i.message }));
    throw new ServeError("invalid", `invalid options for deployment ${deployment}: ${issues.map((i) => `${i.path.join(".") || "(options)"}: ${i.message}`).join("; ")}`, {
      deployment,
      issues,
    });
  }
  const value = parsed.data as Record<string, unknown>;
  const kept: Record<string, unknown> = {};
  for (const k of Object.keys(options)) if ((options as Record<string, unknown>)[k] !== undefined) kept[k] = value[k];
  return Object.freeze(kept) as DeploymentOptions;
}
