// PaddleOCR text-line recognition, served: a PNG of one line of text in, the text out.
//
//   HTTP ─▶ pngRequest ─▶ preprocess ─▶ TextRecognizer.recognize (@batch) ─▶ CtcDecoder.decode ─▶ { text, confidence, model }
//            (ingress)    (3×48×320 tensor)  (onnxruntime-node, userConfig.modelPath)  (userConfig.dictionaryPath)
//
// (The graph's input is exported so bench/fixtures can build variants on the same one.)
// Run from this repository:  bun src/cli/main.ts run examples/ocr/graph.ts
// after `npm install` in examples/ocr (see its README section).
import { DAGDriver, deployment, InputNode, ServeError } from "serve-bin";
import { CtcDecoder } from "./ctc.ts";
import { decodePng, ImageFormatError, toLineTensor, type RgbImage } from "./image.ts";
import { MODELS, TextRecognizer } from "./recognizer.ts";

/** PNG bytes → RgbImage; 400 with what to send for anything else. */
export async function pngRequest(req: Request): Promise<RgbImage> {
  try {
    return decodePng(new Uint8Array(await req.arrayBuffer()));
  } catch (e) {
    throw e instanceof ImageFormatError ? new ServeError("bad_request", e.message) : e;
  }
}

/** RGB image → the recognizer's normalised 3 × 48 × 320 input. */
export const preprocess = deployment(function preprocess(img: RgbImage): Float32Array {
  return toLineTensor(img);
});

/** The model: weights chosen by userConfig, swapped live by a PATCH of userConfig. */
export const Recognizer = deployment(TextRecognizer, { userConfig: { modelPath: `${MODELS}/ch_PP-OCRv4_rec_infer.onnx`, intraOpNumThreads: 1 } });
export const Decoder = deployment(CtcDecoder, { userConfig: { dictionaryPath: `${MODELS}/ppocr_keys_v1.txt` } });

export const input = new InputNode();
export const dag = Decoder.bind().decode.bind(Recognizer.bind().recognize.bind(preprocess.bind(input)));

export default DAGDriver.options({ routePrefix: "/ocr" }).bind(dag, { httpAdapter: pngRequest });

if (import.meta.main) {
  const { render } = await import("./glyphs.ts");
  for (const text of process.argv.slice(2).length ? process.argv.slice(2) : ["HELLO 2024"]) console.log(JSON.stringify(await dag.execute(render(text))));
}
