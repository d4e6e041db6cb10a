import type { ServeError } from "serve-bin";

/** The error that `run` throws or rejects with, as plain data. */
export async function failure(run: () => unknown): Promise<Record<string, unknown>> {
  try {
    await run();
  } catch (e) {
    const err = e as ServeError;
    return { name: err.name, code: err.code, message: err.message, deployment: err.deployment };
  }
  throw new Error("expected a failure, got none");
}
