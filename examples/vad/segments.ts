/** The postprocess step: per-window probabilities to speech segments, in seconds. */
import { MODEL_RATE } from "./audio.ts";
import type { VadScores } from "./silero.ts";
import { WINDOW } from "./silero.ts";

/** How probabilities become segments. */
export interface SegmentOptions {
  /** A segment starts at a window at or above this probability... */
  threshold: number;
  /** ...and ends after `minSilenceS` below `threshold - 0.15` (hysteresis, as Silero's own utilities do). */
  minSilenceS: number;
  /** Shorter segments are dropped. */
  minSpeechS: number;
}

export const DEFAULT_SEGMENTS: SegmentOptions = { threshold: 0.5, minSilenceS: 0.1, minSpeechS: 0.25 };

export interface Segment {
  start: number;
  end: number;
}

/** What the VAD graph answers. */
export interface VadResult {
  /** Seconds of 16 kHz audio the model saw. */
  durationS: number;
  segments: Segment[];
  /** Speech probability of each 96 ms window. */
  probabilities: number[];
  /** The model file (userConfig.modelPath) that computed them. */
  model: string;
}

const WINDOW_S = WINDOW / MODEL_RATE;
const ms = (s: number) => Math.round(s * 1000) / 1000;

export function toSegments(probs: ArrayLike<number>, o: SegmentOptions = DEFAULT_SEGMENTS): Segment[] {
  const out: Segment[] = [];
  const low = o.threshold - 0.15;
  let start = -1;
  let quietFrom = -1;
  const close = (end: number) => {
    if (end - start >= o.minSpeechS) out.push({ start: ms(start), end: ms(end) });
    start = -1;
    quietFrom = -1;
  };
  for (let i = 0; i < probs.length; i++) {
    const t = i * WINDOW_S;
    const p = probs[i]!;
    if (start < 0) {
      if (p >= o.threshold) start = t;
    } else if (p < low) {
      if (quietFrom < 0) quietFrom = t;
      if (t + WINDOW_S - quietFrom >= o.minSilenceS) close(quietFrom);
    } else quietFrom = -1;
  }
  if (start >= 0) close(quietFrom >= 0 ? quietFrom : probs.length * WINDOW_S);
  return out;
}

/** The graph's last step. */
export function postprocess(scores: VadScores, options: SegmentOptions = DEFAULT_SEGMENTS): VadResult {
  return {
    durationS: ms(scores.samples / MODEL_RATE),
    segments: toSegments(scores.probabilities, options),
    probabilities: Array.from(scores.probabilities),
    model: scores.model,
  };
}
