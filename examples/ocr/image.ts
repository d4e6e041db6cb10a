/**
 * Images in: PNG bytes to RGB, and RGB to the recognizer's input tensor
 * (3 × 48 × 320, normalised to [-1, 1], padded with 0 on the right as
 * PaddleOCR pads). Every line has the same shape, so a batch is a plain stack.
 */
import { convertIndexedToRgb, decode } from "fast-png";

/** Height and width of the recognizer's input. */
export const LINE_HEIGHT = 48;
export const LINE_WIDTH = 320;
/** The largest image a request may send, per side. */
export const MAX_SIDE = 4096;

/** 8-bit RGB pixels, row-major. */
export interface RgbImage {
  width: number;
  height: number;
  rgb: Uint8Array;
}

/** Thrown for bytes that are not an image this example reads; the message says what to send. */
export class ImageFormatError extends Error {
  override name = "ImageFormatError";
}

/** Decodes a PNG (grey, grey+alpha, RGB, RGBA or palette; 8 or 16 bits), alpha composited on white. */
export function decodePng(bytes: Uint8Array): RgbImage {
  let png: ReturnType<typeof decode>;
  try {
    png = decode(bytes);
  } catch (e) {
    throw new ImageFormatError(`the body is not a PNG image (${(e as Error).message}); send image/png bytes of one line of text`);
  }
  const { width, height } = png;
  if (width < 1 || height < 1 || width > MAX_SIDE || height > MAX_SIDE) {
    throw new ImageFormatError(`the image is ${width}×${height}; each side must be 1..${MAX_SIDE} pixels (crop it to the text line)`);
  }
  const data = png.palette ? convertIndexedToRgb(png) : png.data;
  const channels = png.palette ? (png.palette[0]!.length as number) : png.channels;
  const scale = png.depth === 16 ? 1 / 257 : 1;
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    const at = i * channels;
    const grey = channels <= 2;
    const alpha = channels === 2 || channels === 4 ? data[at + channels - 1]! * scale / 255 : 1;
    for (let c = 0; c < 3; c++) {
      const v = data[at + (grey ? 0 : c)]! * scale;
      rgb[i * 3 + c] = Math.round(v * alpha + 255 * (1 - alpha));
    }
  }
  return { width, height, rgb };
}

/**
 * Scales the image to LINE_HEIGHT rows keeping its aspect (squeezed to
 * LINE_WIDTH if wider), bilinear, then normalises (v / 255 − 0.5) / 0.5 into
 * a channel-first Float32Array of 3 × LINE_HEIGHT × LINE_WIDTH.
 */
export function toLineTensor(img: RgbImage): Float32Array {
  const w = Math.max(1, Math.min(LINE_WIDTH, Math.round((img.width * LINE_HEIGHT) / img.height)));
  const out = new Float32Array(3 * LINE_HEIGHT * LINE_WIDTH);
  const sx = img.width / w;
  const sy = img.height / LINE_HEIGHT;
  for (let y = 0; y < LINE_HEIGHT; y++) {
    const fy = Math.min(img.height - 1, Math.max(0, (y + 0.5) * sy - 0.5));
    const y0 = Math.floor(fy);
    const y1 = Math.min(img.height - 1, y0 + 1);
    const dy = fy - y0;
    for (let x = 0; x < w; x++) {
      const fx = Math.min(img.width - 1, Math.max(0, (x + 0.5) * sx - 0.5));
      const x0 = Math.floor(fx);
      const x1 = Math.min(img.width - 1, x0 + 1);
      const dx = fx - x0;
      for (let c = 0; c < 3; c++) {
        const p = (yy: number, xx: number) => img.rgb[(yy * img.width + xx) * 3 + c]!;
        const v = (p(y0, x0) * (1 - dx) + p(y0, x1) * dx) * (1 - dy) + (p(y1, x0) * (1 - dx) + p(y1, x1) * dx) * dy;
        out[(c * LINE_HEIGHT + y) * LINE_WIDTH + x] = (v / 255 - 0.5) / 0.5;
      }
    }
  }
  return out;
}
