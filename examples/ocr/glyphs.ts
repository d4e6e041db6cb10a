/**
 * A 5×7 bitmap font, to make test and demo images without a font file:
 * `bun examples/ocr/glyphs.ts "HELLO 2024" line.png` writes a PNG of one line.
 */
import { encode } from "fast-png";
import type { RgbImage } from "./image.ts";

const FONT: Record<string, string> = {
  "0": "01110 10001 10001 10001 10001 10001 01110",
  "1": "00100 01100 00100 00100 00100 00100 01110",
  "2": "01110 10001 00001 00010 00100 01000 11111",
  "3": "11111 00010 00100 00010 00001 10001 01110",
  "4": "00010 00110 01010 10010 11111 00010 00010",
  "5": "11111 10000 11110 00001 00001 10001 01110",
  "6": "00110 01000 10000 11110 10001 10001 01110",
  "7": "11111 00001 00010 00100 01000 01000 01000",
  "8": "01110 10001 10001 01110 10001 10001 01110",
  "9": "01110 10001 10001 01111 00001 00010 01100",
  A: "01110 10001 10001 11111 10001 10001 10001",
  B: "11110 10001 10001 11110 10001 10001 11110",
  D: "11110 10001 10001 10001 10001 10001 11110",
  E: "11111 10000 10000 11110 10000 10000 11111",
  H: "10001 10001 10001 11111 10001 10001 10001",
  I: "01110 00100 00100 00100 00100 00100 01110",
  L: "10000 10000 10000 10000 10000 10000 11111",
  N: "10001 11001 10101 10011 10001 10001 10001",
  O: "01110 10001 10001 10001 10001 10001 01110",
  R: "11110 10001 10001 11110 10100 10010 10001",
  S: "01111 10000 10000 01110 00001 00001 11110",
  T: "11111 00100 00100 00100 00100 00100 00100",
  V: "10001 10001 10001 10001 10001 01010 00100",
  W: "10001 10001 10001 10101 10101 10101 01010",
  " ": "00000 00000 00000 00000 00000 00000 00000",
};

/** The characters `render` can draw. */
export const DRAWABLE = Object.keys(FONT).join("");

/** Black text on white, each font pixel `scale` pixels wide, with a margin of 2 × scale. */
export function render(text: string, scale = 4): RgbImage {
  const margin = 2 * scale;
  const width = text.length * 6 * scale - scale + 2 * margin;
  const height = 7 * scale + 2 * margin;
  const rgb = new Uint8Array(width * height * 3).fill(255);
  [...text].forEach((ch, i) => {
    const rows = FONT[ch]?.split(" ");
    if (!rows) throw new Error(`render cannot draw ${JSON.stringify(ch)}; it draws ${JSON.stringify(DRAWABLE)}`);
    for (let r = 0; r < 7; r++)
      for (let c = 0; c < 5; c++)
        if (rows[r]![c] === "1")
          for (let y = 0; y < scale; y++)
            for (let x = 0; x < scale; x++) rgb.fill(0, ((margin + r * scale + y) * width + margin + (i * 6 + c) * scale + x) * 3, ((margin + r * scale + y) * width + margin + (i * 6 + c) * scale + x + 1) * 3);
  });
  return { width, height, rgb };
}

/** The image as PNG bytes (RGB, 8-bit). */
export function toPng(img: RgbImage): Uint8Array {
  return encode({ width: img.width, height: img.height, data: img.rgb, channels: 3, depth: 8 });
}

if (import.meta.main) {
  const [text = "HELLO 2024", file = "line.png"] = process.argv.slice(2);
  await Bun.write(file, toPng(render(text)));
  console.log(`wrote ${file}`);
}
