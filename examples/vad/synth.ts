/**
 * Deterministic test audio: silence around a voiced, vowel-like stretch
 * (a glottal pulse train through three formant resonators, a new vowel every
 * syllable), which Silero VAD labels speech, and a pure tone, which it does not.
 * Run it to write a demo file: `bun examples/vad/synth.ts speech.wav`.
 */
import { encodeWav, MODEL_RATE } from "./audio.ts";

/** A linear congruential generator, so every run makes the same samples. */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** A two-pole resonator at `freq` Hz with bandwidth `bw` Hz. */
function resonate(x: Float32Array, freq: number, bw: number, rate: number): Float32Array {
  const y = new Float32Array(x.length);
  const r = Math.exp((-Math.PI * bw) / rate);
  const a1 = 2 * r * Math.cos((2 * Math.PI * freq) / rate);
  const a2 = -r * r;
  let y1 = 0;
  let y2 = 0;
  for (let i = 0; i < x.length; i++) {
    const v = (1 - r) * x[i]! + a1 * y1 + a2 * y2;
    y[i] = v;
    y2 = y1;
    y1 = v;
  }
  return y;
}

/** Formants (F1, F2, F3 in Hz) of /a/, /i/ and /o/. */
const VOWELS = [
  [700, 1220, 2600],
  [300, 2300, 3000],
  [500, 900, 2500],
] as const;

/** `seconds` of vowel-like sound: pitch around 120 Hz, one vowel per 0.25 s syllable, peak 0.5. */
export function voiced(seconds: number, rate = MODEL_RATE, seed = 7): Float32Array {
  const n = Math.round(seconds * rate);
  const rand = random(seed);
  const source = new Float32Array(n);
  let phase = 0;
  for (let i = 0; i < n; i++) {
    phase += (120 + 25 * Math.sin((2 * Math.PI * 1.5 * i) / rate)) / rate;
    if (phase >= 1) phase -= 1;
    source[i] = (phase < 0.05 ? 1 : 0) + 0.02 * (rand() - 0.5);
  }
  const out = new Float32Array(n);
  const syllable = Math.round(0.25 * rate);
  for (let s0 = 0, k = 0; s0 < n; s0 += syllable, k++) {
    const seg = source.subarray(s0, Math.min(n, s0 + syllable));
    const [f1, f2, f3] = VOWELS[k % VOWELS.length]!;
    const a = resonate(seg, f1, 80, rate);
    const b = resonate(seg, f2, 100, rate);
    const c = resonate(seg, f3, 150, rate);
    for (let i = 0; i < seg.length; i++) out[s0 + i] = Math.sqrt(Math.sin((Math.PI * i) / seg.length)) * (a[i]! + 0.5 * b[i]! + 0.25 * c[i]!);
  }
  let peak = 0;
  for (const v of out) peak = Math.max(peak, Math.abs(v));
  for (let i = 0; i < n; i++) out[i] = (out[i]! / peak) * 0.5;
  return out;
}

/** A pure tone: steady, not speech. */
export function tone(seconds: number, freq = 1000, rate = MODEL_RATE): Float32Array {
  const out = new Float32Array(Math.round(seconds * rate));
  for (let i = 0; i < out.length; i++) out[i] = 0.3 * Math.sin((2 * Math.PI * freq * i) / rate);
  return out;
}

/** `total` s of silence with `length` s of voiced sound starting at `start` s. */
export function speechClip(total: number, start: number, length: number, rate = MODEL_RATE): Float32Array {
  const out = new Float32Array(Math.round(total * rate));
  out.set(voiced(length, rate), Math.round(start * rate));
  return out;
}

if (import.meta.main) {
  const file = process.argv[2] ?? "speech.wav";
  await Bun.write(file, encodeWav(speechClip(4, 1, 2), MODEL_RATE));
  console.log(`wrote ${file}: 4 s at ${MODEL_RATE} Hz, voiced from 1.0 s to 3.0 s`);
}
