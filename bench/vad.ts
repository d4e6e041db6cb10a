/**
 * vad: examples/vad (Silero VAD on onnxruntime-node) served, over its
 * dag.execute(); its model batched vs unbatched; RssAnon per model replica.
 * Needs `npm install` in examples/vad (ONNXRUNTIME_NODE_INSTALL_CUDA=skip).
 */
import { runModelBench } from "./lib/model-bench.ts";
import type { Scenario } from "./lib/scenario.ts";

const CLIPS = 4;

export const vad: Scenario = {
  name: "vad",
  title: "Silero VAD example: served over dag.execute(), @batch vs unbatched on the real model",
  async run(ctx) {
    const { encodeWav, MODEL_RATE } = await import("../examples/vad/audio.ts");
    const { speechClip } = await import("../examples/vad/synth.ts");
    const { CONNECTIONS } = await import("./fixtures/vad.ts");
    const starts = Array.from({ length: CLIPS }, (_, i) => 0.5 + 0.25 * i);
    return runModelBench(
      {
        name: "vad",
        example: "vad",
        adapter: "audioRequest",
        models: { example: "SileroVad", batched: "BatchedVad", unbatched: "UnbatchedVad" },
        bodies: () => starts.map((s) => encodeWav(speechClip(3, s, 1.5), MODEL_RATE)),
        check(answer, i) {
          const segs = (answer as { segments: { start: number; end: number }[] }).segments;
          if (segs.length !== 1 || Math.abs(segs[0]!.start - starts[i]!) > 0.2) throw new Error(`clip ${i} (voiced from ${starts[i]} s) got ${JSON.stringify(segs)}`);
        },
        describe: `Each request: a 3 s 16 kHz WAV (${CLIPS} clips, voiced 1.5 s at different offsets), 32 model windows of 1536 samples.`,
      },
      ctx,
      CONNECTIONS,
    );
  },
};
