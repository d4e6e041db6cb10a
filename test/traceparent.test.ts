/** W3C traceparent reading and writing (the tracing tests cover it end to end). */
import { describe, expect, it } from "vitest";
import { formatTraceparent, parseTraceparent } from "../src/runtime/tracing/traceparent.ts";
import { tracesUrl } from "../src/runtime/tracing/otlp-exporter.ts";

const T = "4bf92f3577b34da6a3ce929d0e0e4736";
const S = "00f067aa0ba902b7";

describe("traceparent", () => {
  it("reads the trace id, parent span id and sampled flag, and writes them back", () => {
    expect(parseTraceparent(`00-${T}-${S}-01`)).toEqual({ traceId: T, spanId: S, sampled: true });
    expect(parseTraceparent(`00-${T}-${S}-00`)).toEqual({ traceId: T, spanId: S, sampled: false });
    expect(parseTraceparent(` 00-${T.toUpperCase()}-${S}-03 `)).toEqual({ traceId: T, spanId: S, sampled: true });
    expect(formatTraceparent({ traceId: T, spanId: S, sampled: true })).toBe(`00-${T}-${S}-01`);
  });

  it("reads a later version by its first four fields, and refuses what the spec says to ignore", () => {
    expect(parseTraceparent(`01-${T}-${S}-01-what-comes-later`)).toEqual({ traceId: T, spanId: S, sampled: true });
    for (const bad of [undefined, "", "garbage", `ff-${T}-${S}-01`, `00-${T}-${S}-01-extra`, `00-${"0".repeat(32)}-${S}-01`, `00-${T}-${"0".repeat(16)}-01`, `00-${T.slice(1)}-${S}-01`]) {
      expect(parseTraceparent(bad)).toBeNull();
    }
  });

  it("adds the collector's default path to an endpoint without one, and keeps a path that is given", () => {
    expect(tracesUrl("http://127.0.0.1:4318")).toBe("http://127.0.0.1:4318/v1/traces");
    expect(tracesUrl("http://collector:4318/custom/traces")).toBe("http://collector:4318/custom/traces");
  });
});
