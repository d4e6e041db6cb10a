/**
 * setBatchOptions and maxOngoingRequests agree: a replica admits at most
 * maxOngoingRequests calls, so raising maxBatchSize past it live is refused
 * with a message that names maxOngoingRequests; raised in that order, batches
 * really grow. Served for real, batch sizes counted from the answers.
 */
import { describe, expect, it } from "vitest";
import { postJSON, startServer, stopCleanly } from "./harness.ts";

describe("setBatchOptions against maxOngoingRequests, served", () => {
  it("refuses a maxBatchSize above maxOngoingRequests, and batches grow once maxOngoingRequests is raised first", async () => {
    const server = await startServer("test/fixtures/batch-admission.ts");
    const patch = async (body: unknown) => {
      const res = await fetch(`${server.adminUrl}/api/applications/default/deployments/Scorer`, { method: "PATCH", body: JSON.stringify(body), headers: { "content-type": "application/json" } });
      return { status: res.status, body: (await res.json()) as { message?: string } };
    };
    /** n requests at once; the largest batch any of them was in. */
    const largestBatch = async (n: number) => {
      const answers = await Promise.all(
        Array.from({ length: n }, async (_, i) => {
          const res = await postJSON(server.url, i);
          expect(res.status).toEqual(200);
          return (await res.json()) as { y: number; batchSize: number };
        }),
      );
      expect(answers.map((a) => a.y)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
      return Math.max(...answers.map((a) => a.batchSize));
    };
    try {
      // The code's maxBatchSize 4 floors maxOngoingRequests at the default 5.
      const config = (await (await fetch(`${server.adminUrl}/api/config`)).json()) as { applications: { deployments: { name: string; maxOngoingRequests: number }[] }[] };
      expect(config.applications[0]!.deployments.find((d) => d.name === "Scorer")!.maxOngoingRequests).toEqual(5);
      expect(await largestBatch(16)).toEqual(4);

      // Past the admission limit: refused, naming it, and nothing changed.
      const refused = await patch({ userConfig: { maxBatchSize: 12 } });
      expect(refused.status).toBeGreaterThanOrEqual(400);
      expect(refused.body.message).toMatch(/maxBatchSize 12 is above this deployment's maxOngoingRequests \(5\).*raise maxOngoingRequests to at least 12 first/);
      expect(await largestBatch(16)).toEqual(4);

      // In order: admission first, then the batch size. Batches now fill to 12.
      expect((await patch({ maxOngoingRequests: 12 })).status).toEqual(200);
      expect((await patch({ userConfig: { maxBatchSize: 12 } })).status).toEqual(200);
      expect(await largestBatch(24)).toEqual(12);
    } finally {
      await stopCleanly(server);
    }
  });
});
