// Silero VAD, served: audio in (WAV bytes or JSON samples), speech segments out.
//
//   HTTP ─▶ audioRequest ─▶ preprocess ─▶ SileroVad.probabilities (@batch) ─▶ postprocess ─▶ { segments, ... }
//            (ingress)       (16 kHz mono)   (onnxruntime-node, userConfig.modelPath)
//
// (The graph's input is exported so bench/fixtures can build variants on the same one.)
// Run from this repository:  bun src/cli/main.ts run examples/vad/graph.ts
// after `npm install` in examples/vad (see its README section).
import { DAGDriver, deployment, InputNode, ServeError, z } from "serve-bin";
import { AudioFormatError, checkDuration, checkRate, decodeWav, MAX_DURATION_S, MODEL_RATE, resample, type Audio } from "./audio.ts";
import { DEFAULT_SEGMENTS, postprocess as toResult } from "./segments.ts";
import { DEFAULT_MODEL, SileroVad } from "./silero.ts";

const jsonAudio = z.object({
  samples: z.array(z.number().finite()).describe("mono samples, nominally in [-1, 1]"),
  sampleRate: z.number().int().default(MODEL_RATE).describe("Hz; resampled to 16 kHz"),
});

/** WAV bytes (RIFF header) or JSON `{ samples, sampleRate? }` → Audio; 400 for anything else, 413 past MAX_DURATION_S. */
export async function audioRequest(req: Request): Promise<Audio> {
  const body = new Uint8Array(await req.arrayBuffer());
  try {
    if (body.byteLength >= 4 && String.fromCharCode(...body.subarray(0, 4)) === "RIFF") return decodeWav(body);
    let json: unknown;
    try {
      json = JSON.parse(new TextDecoder().decode(body));
    } catch {
      throw new AudioFormatError("the body is neither a WAV file nor JSON; send audio/wav, or JSON { samples: number[], sampleRate?: number }");
    }
    const r = jsonAudio.safeParse(json);
    if (!r.success) throw new ServeError("invalid", "the JSON body is not { samples: number[], sampleRate?: number }", { issues: r.error.issues.map((i) => ({ path: i.path as (string | number)[], message: i.message })) });
    checkRate(r.data.sampleRate);
    checkDuration(r.data.samples.length, r.data.sampleRate);
    return { samples: Float32Array.from(r.data.samples), sampleRate: r.data.sampleRate };
  } catch (e) {
    if (!(e instanceof AudioFormatError)) throw e;
    const tooLong = e.message.includes(`limit of ${MAX_DURATION_S} s`);
    throw new ServeError(tooLong ? "payload_too_large" : "bad_request", e.message);
  }
}

/** Any rate, mono → 16 kHz Float32Array, the model's input. */
export const preprocess = deployment(function preprocess(audio: Audio): Float32Array {
  return resample(audio.samples, audio.sampleRate, MODEL_RATE);
});

/** The model: weights chosen by userConfig, swapped live by a PATCH of userConfig. */
export const Vad = deployment(SileroVad, { userConfig: { modelPath: DEFAULT_MODEL, intraOpNumThreads: 1 } });

export const postprocess = deployment(toResult);

export const input = new InputNode();
const model = Vad.bind();
export const dag = postprocess.bind(model.probabilities.bind(preprocess.bind(input)), DEFAULT_SEGMENTS);

export default DAGDriver.options({ routePrefix: "/vad" }).bind(dag, { httpAdapter: audioRequest });

if (import.meta.main) {
  const { speechClip } = await import("./synth.ts");
  const r = await dag.execute({ samples: speechClip(4, 1, 2), sampleRate: MODEL_RATE });
  console.log(JSON.stringify({ ...r, probabilities: `${r.probabilities.length} windows` }));
}
