/**
 * HttpError: user code answers with a status of its own. Over HTTP from a
 * served graph (adapter, a deployment one hop behind the ingress, a caller
 * that maps a status it caught), and locally through execute().
 */
import { describe, expect, it } from "vitest";
import { HttpError, ServeError } from "../src/index.ts";
import graph from "./fixtures/http-errors.ts";
import { startServer, stopCleanly } from "./harness.ts";

const JSON_TYPE = expect.stringMatching(/^application\/json/);

describe("HttpError over HTTP", () => {
  it("reaches the client with its status and a JSON body, from the adapter, across hops, and when caught and rethrown", async () => {
    const server = await startServer("test/fixtures/http-errors.ts");
    try {
      const ask = async (body: unknown) => {
        const res = await fetch(`${server.url}/items`, { method: "POST", body: typeof body === "string" ? body : JSON.stringify(body) });
        return { status: res.status, type: res.headers.get("content-type"), body: await res.json() };
      };
      expect(await ask({ id: 7 })).toEqual({ status: 200, type: JSON_TYPE, body: { id: 7, name: "item-7" } });
      expect(await ask("not json")).toEqual({
        status: 400,
        type: JSON_TYPE,
        body: { error: "bad_request", message: "send a JSON object with a numeric id", deployment: "DAGDriver", field: "id" },
      });
      // Thrown in lookup's own process, passed through Front's and the DAGDriver's.
      expect(await ask({ id: 404 })).toEqual({
        status: 404,
        type: JSON_TYPE,
        body: { error: "not_found", message: "no item 404", deployment: "lookup", item: 404 },
      });
      expect(await ask({ id: 503 })).toEqual({
        status: 503,
        type: JSON_TYPE,
        body: { error: "unavailable", message: "the catalogue is being reindexed", deployment: "lookup", retryAfterS: 5 },
      });
      expect(await ask({ id: 404, strict: true })).toEqual({
        status: 422,
        type: JSON_TYPE,
        body: { error: "invalid", message: "item 404 is required in strict mode", deployment: "Front" },
      });
      // No stack: an HttpError is an answer, not a crash (errorDetail is "full" here).
      expect(JSON.stringify((await ask({ id: 404 })).body)).not.toMatch(/stack|http-errors\.ts/);
    } finally {
      await stopCleanly(server);
    }
  });
});

describe("HttpError locally and at construction", () => {
  it("fails execute() with a ServeError that keeps the status and the fields", async () => {
    const err = await graph.execute({ id: 404 }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ServeError);
    expect({ code: (err as ServeError).code, status: (err as ServeError).status, body: (err as ServeError).body, message: (err as ServeError).message }).toEqual({
      code: "http",
      status: 404,
      body: { item: 404 },
      message: "no item 404",
    });
  });

  it("refuses a status outside 400–599 and a body that is not an object, saying what to do", () => {
    expect(() => new HttpError(200, "fine")).toThrow(/from 400 to 599, got 200; to answer with another status, return a Response/);
    expect(() => new HttpError(600, "x")).toThrow(/from 400 to 599, got 600/);
    expect(() => new HttpError(404.5, "x")).toThrow(/integer/);
    expect(() => new HttpError(404, "x", [1] as unknown as Record<string, unknown>)).toThrow(/plain object/);
    expect(new HttpError(418, "teapot", { a: 1 })).toMatchObject({ status: 418, message: "teapot", body: { a: 1 }, name: "HttpError" });
  });
});
