/**
 * WAV in and out, and resampling to the model's 16 kHz mono: plain code with
 * no dependencies, shared by the HTTP adapter, the preprocess step, the test
 * and the demo-audio script.
 */

/** Audio as the graph passes it on: mono samples in [-1, 1] and their rate. */
export interface Audio {
  samples: Float32Array;
  sampleRate: number;
}

/** The rate Silero VAD runs at. */
export const MODEL_RATE = 16_000;

/** Longest audio one request may carry; longer input is refused with 413 by the adapter. */
export const MAX_DURATION_S = 600;

/** Rates a request may declare (Hz). */
export const MIN_RATE = 8_000;
export const MAX_RATE = 192_000;

/** Thrown for input that is not audio this example reads; the message says what to send. */
export class AudioFormatError extends Error {
  override name = "AudioFormatError";
}

const PCM = 1;
const FLOAT = 3;
const EXTENSIBLE = 0xfffe;

function ascii(view: DataView, at: number): string {
  return String.fromCharCode(view.getUint8(at), view.getUint8(at + 1), view.getUint8(at + 2), view.getUint8(at + 3));
}

/** Reads a RIFF/WAVE file: PCM 8/16/24/32-bit or float 32-bit, any channel count (averaged to mono). */
export function decodeWav(bytes: Uint8Array): Audio {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.byteLength < 12 || ascii(view, 0) !== "RIFF" || ascii(view, 8) !== "WAVE") {
    throw new AudioFormatError("the body is not a WAV file (no RIFF/WAVE header); send audio/wav, or JSON { samples, sampleRate }");
  }
  let fmt: { format: number; channels: number; rate: number; bits: number } | null = null;
  for (let at = 12; at + 8 <= bytes.byteLength; ) {
    const id = ascii(view, at);
    const size = view.getUint32(at + 4, true);
    const body = at + 8;
    if (id === "fmt ") {
      if (size < 16) throw new AudioFormatError("the WAV file's fmt chunk is shorter than 16 bytes");
      let format = view.getUint16(body, true);
      if (format === EXTENSIBLE && size >= 26) format = view.getUint16(body + 24, true); // the sub-format GUID's first two bytes
      fmt = { format, channels: view.getUint16(body + 2, true), rate: view.getUint32(body + 4, true), bits: view.getUint16(body + 14, true) };
    } else if (id === "data") {
      if (!fmt) throw new AudioFormatError("the WAV file has its data chunk before its fmt chunk");
      const end = Math.min(body + size, bytes.byteLength); // a streamed WAV may declare a size it never reached
      return { samples: toMono(view, body, end, fmt), sampleRate: fmt.rate };
    }
    at = body + size + (size & 1);
  }
  throw new AudioFormatError("the WAV file has no data chunk");
}

function toMono(view: DataView, start: number, end: number, f: { format: number; channels: number; rate: number; bits: number }): Float32Array {
  const read = sampleReader(view, f.format, f.bits);
  if (f.channels < 1) throw new AudioFormatError("the WAV file declares 0 channels");
  checkRate(f.rate);
  const frameBytes = (f.bits / 8) * f.channels;
  const frames = Math.floor((end - start) / frameBytes);
  checkDuration(frames, f.rate);
  const out = new Float32Array(frames);
  for (let i = 0; i < frames; i++) {
    let sum = 0;
    for (let c = 0; c < f.channels; c++) sum += read(start + i * frameBytes + (c * f.bits) / 8);
    out[i] = sum / f.channels;
  }
  return out;
}

function sampleReader(view: DataView, format: number, bits: number): (at: number) => number {
  if (format === FLOAT && bits === 32) return (at) => view.getFloat32(at, true);
  if (format === PCM && bits === 8) return (at) => (view.getUint8(at) - 128) / 128;
  if (format === PCM && bits === 16) return (at) => view.getInt16(at, true) / 32768;
  if (format === PCM && bits === 24) return (at) => ((view.getUint8(at) | (view.getUint8(at + 1) << 8) | (view.getInt8(at + 2) << 16)) / 8388608);
  if (format === PCM && bits === 32) return (at) => view.getInt32(at, true) / 2147483648;
  throw new AudioFormatError(`WAV format ${format} with ${bits}-bit samples is not read here; send PCM 8/16/24/32-bit or float 32-bit`);
}

/** Refuses a rate outside [MIN_RATE, MAX_RATE]. */
export function checkRate(rate: number): void {
  if (!Number.isInteger(rate) || rate < MIN_RATE || rate > MAX_RATE) {
    throw new AudioFormatError(`sample rate ${rate} is outside ${MIN_RATE}..${MAX_RATE} Hz`);
  }
}

/** Refuses audio longer than MAX_DURATION_S. */
export function checkDuration(frames: number, rate: number): void {
  if (frames / rate > MAX_DURATION_S) {
    throw new AudioFormatError(`the audio lasts ${(frames / rate).toFixed(1)} s, over the limit of ${MAX_DURATION_S} s; split it into shorter requests`);
  }
}

/** A 16-bit PCM mono WAV file of `samples` (clipped to [-1, 1]). */
export function encodeWav(samples: Float32Array, sampleRate: number): Uint8Array {
  const out = new Uint8Array(44 + samples.length * 2);
  const view = new DataView(out.buffer);
  const put = (at: number, s: string) => [...s].forEach((ch, i) => view.setUint8(at + i, ch.charCodeAt(0)));
  put(0, "RIFF");
  view.setUint32(4, 36 + samples.length * 2, true);
  put(8, "WAVE");
  put(12, "fmt ");
  view.setUint32(16, 16, true);
  view.setUint16(20, PCM, true);
  view.setUint16(22, 1, true);
  view.setUint32(24, sampleRate, true);
  view.setUint32(28, sampleRate * 2, true);
  view.setUint16(32, 2, true);
  view.setUint16(34, 16, true);
  put(36, "data");
  view.setUint32(40, samples.length * 2, true);
  for (let i = 0; i < samples.length; i++) view.setInt16(44 + i * 2, Math.round(Math.max(-1, Math.min(1, samples[i]!)) * 32767), true);
  return out;
}

/**
 * Resamples to `to` Hz. Whole-number downsampling (48 → 16 kHz) averages each
 * block of input samples, which also filters what would alias; other ratios
 * interpolate linearly, enough for a voice-activity model.
 */
export function resample(samples: Float32Array, from: number, to: number): Float32Array {
  if (from === to) return samples;
  const ratio = from / to;
  const n = Math.floor(samples.length / ratio);
  const out = new Float32Array(n);
  if (Number.isInteger(ratio)) {
    for (let i = 0; i < n; i++) {
      let sum = 0;
      for (let k = 0; k < ratio; k++) sum += samples[i * ratio + k]!;
      out[i] = sum / ratio;
    }
    return out;
  }
  for (let i = 0; i < n; i++) {
    const x = i * ratio;
    const k = Math.floor(x);
    const a = samples[k]!;
    const b = samples[Math.min(k + 1, samples.length - 1)]!;
    out[i] = a + (b - a) * (x - k);
  }
  return out;
}
