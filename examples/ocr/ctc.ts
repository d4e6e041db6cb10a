/** The postprocess step: CTC greedy decoding of the recognizer's best classes with PaddleOCR's dictionary. */
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { z } from "serve-bin";
import type { LineScores } from "./recognizer.ts";

const HERE = dirname(new URL(import.meta.url).pathname);
const configSchema = z.object({ dictionaryPath: z.string().min(1).describe("one character per line, in the model's class order") });
/** The decoder deployment's userConfig. */
export type DecoderConfig = z.input<typeof configSchema>;

/** What the OCR graph answers. */
export interface OcrResult {
  text: string;
  /** Mean probability of the characters kept (0 for an empty line). */
  confidence: number;
  /** The recognizer model file that read it. */
  model: string;
}

export class CtcDecoder {
  #chars: string[] = [];

  reconfigure(config: DecoderConfig): void {
    const parsed = configSchema.safeParse(config);
    if (!parsed.success) throw new Error(`invalid userConfig for CtcDecoder: ${parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ")}`);
    // Class 0 is CTC's blank; the dictionary's characters follow; the last class is a space.
    this.#chars = ["", ...readFileSync(resolve(HERE, parsed.data.dictionaryPath), "utf8").split("\n").map((l) => l.replace(/\r$/, "")), " "];
  }

  /** Drops blanks and repeats of the previous step's class. */
  decode(s: LineScores): OcrResult {
    let text = "";
    let sum = 0;
    let kept = 0;
    for (let t = 0, prev = 0; t < s.best.length; prev = s.best[t]!, t++) {
      const k = s.best[t]!;
      if (k === 0 || k === prev) continue;
      text += this.#chars[k] ?? "";
      sum += s.prob[t]!;
      kept++;
    }
    return { text, confidence: kept ? Math.round((sum / kept) * 1e4) / 1e4 : 0, model: s.model };
  }
}
