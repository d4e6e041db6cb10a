/**
 * toJSON, the encoding of a JSON answer: plain data goes straight to
 * JSON.stringify; anything holding a BigInt, typed array, Map or Set, at any
 * depth, goes through the replacer that writes them as JSON can carry.
 */
import { describe, expect, it } from "vitest";
import { toJSON } from "../src/api/http-result.ts";

describe("toJSON", () => {
  it("writes plain data as JSON.stringify does, and undefined as null", () => {
    const v = { id: 7, text: "hé", tags: ["a", "b"], nested: { ok: true, none: null, skipped: undefined }, list: [1, [2, [3]]] };
    expect(toJSON(v)).toBe(JSON.stringify(v));
    expect(toJSON(undefined)).toBe("null");
    expect(toJSON("s")).toBe('"s"');
  });

  it("writes BigInt, typed arrays, Maps and Sets found at any depth, also inside class instances", () => {
    class Out {
      constructor(readonly total: bigint) {}
    }
    expect(JSON.parse(toJSON({ a: [{ b: { n: 2n ** 64n } }] }))).toEqual({ a: [{ b: { n: "18446744073709551616" } }] });
    expect(JSON.parse(toJSON([[new Float32Array([0.5, -2])]]))).toEqual([[[0.5, -2]]]);
    expect(JSON.parse(toJSON({ m: new Map([["k", new Set([1, 2])]]) }))).toEqual({ m: { k: [1, 2] } });
    expect(JSON.parse(toJSON({ out: new Out(5n) }))).toEqual({ out: { total: "5" } });
  });

  it("keeps an object's own toJSON, and data nested deeper than the quick check walks", () => {
    expect(JSON.parse(toJSON({ when: { toJSON: () => ({ big: 1n }) } }))).toEqual({ when: { big: "1" } });
    let deep: unknown = { leaf: 3n };
    for (let i = 0; i < 40; i++) deep = { d: deep };
    let expected: unknown = { leaf: "3" };
    for (let i = 0; i < 40; i++) expected = { d: expected };
    expect(JSON.parse(toJSON(deep))).toEqual(expected);
  });
});
