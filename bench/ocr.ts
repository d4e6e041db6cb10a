/**
 * ocr: examples/ocr (PaddleOCR's PP-OCRv4 recognizer on onnxruntime-node)
 * served, over its dag.execute(); its model batched vs unbatched; RssAnon per
 * model replica. Needs `npm install` in examples/ocr.
 */
import { runModelBench } from "./lib/model-bench.ts";
import type { Scenario } from "./lib/scenario.ts";

const LINES = ["HELLO WORLD", "12345", "RAIN 1978", "TABLE 36"];

export const ocr: Scenario = {
  name: "ocr",
  title: "OCR example: served over dag.execute(), @batch vs unbatched on the real model",
  async run(ctx) {
    const { render, toPng } = await import("../examples/ocr/glyphs.ts");
    const { CONNECTIONS } = await import("./fixtures/ocr.ts");
    return runModelBench(
      {
        name: "ocr",
        example: "ocr",
        adapter: "pngRequest",
        models: { example: "TextRecognizer", batched: "BatchedRecognizer", unbatched: "UnbatchedRecognizer" },
        bodies: () => LINES.map((t) => toPng(render(t))),
        check(answer, i) {
          const text = (answer as { text: string }).text;
          if (text !== LINES[i]) throw new Error(`line ${i} read as ${JSON.stringify(text)}, expected ${LINES[i]}`);
        },
        describe: `Each request: a PNG of one line of text (${LINES.length} lines drawn in a 5×7 bitmap font), one [n, 3, 48, 320] model run per batch.`,
      },
      ctx,
      CONNECTIONS,
    );
  },
};
