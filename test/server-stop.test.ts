/**
 * Server.stop() races the listener's drain against proxy.shutdownTimeoutS. That deadline
 * must not outlive the stop: a script that stopped its server ends when the script does.
 */
import { describe, expect, test } from "vitest";
import { scriptEnds } from "./harness.ts";

const src = (f: string) => JSON.stringify(new URL(`../src/${f}`, import.meta.url).pathname);

describe("Server.stop", () => {
  test("a stopped server does not keep its process alive until shutdownTimeoutS", async () => {
    // An hour of grace: before the fix the armed sleep held the process for all of it.
    const script = `import { Server } from ${src("http/server.ts")};
import { parseConfig } from ${src("config/schema.ts")};
const parsed = parseConfig({ proxy: { port: 0, shutdownTimeoutS: 3600 }, admin: { port: 0 }, applications: [] });
if (!parsed.ok) throw new Error(JSON.stringify(parsed.issues));
const server = await Server.start({ config: parsed.value, baseDir: process.cwd() });
await server.stop();
console.log("stopped");`;
    expect(await scriptEnds(script)).toEqual({ code: 0, stdout: "stopped" });
  });
});
