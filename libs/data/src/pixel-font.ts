import type { Image } from "./image.js";
import type { Rgb } from "./shapes-grammar.js";

/** A 3×5 pixel font (upper-case letters, digits, a little punctuation): 5 rows of 3 bits per glyph. */
const GLYPHS: Record<string, string> = {
  A: "010 101 111 101 101",
  B: "110 101 110 101 110",
  C: "011 100 100 100 011",
  D: "110 101 101 101 110",
  E: "111 100 110 100 111",
  F: "111 100 110 100 100",
  G: "011 100 101 101 011",
  H: "101 101 111 101 101",
  I: "111 010 010 010 111",
  J: "001 001 001 101 010",
  K: "101 101 110 101 101",
  L: "100 100 100 100 111",
  M: "101 111 111 101 101",
  N: "110 101 101 101 101",
  O: "010 101 101 101 010",
  P: "110 101 110 100 100",
  Q: "010 101 101 110 011",
  R: "110 101 110 101 101",
  S: "011 100 010 001 110",
  T: "111 010 010 010 010",
  U: "101 101 101 101 111",
  V: "101 101 101 101 010",
  W: "101 101 111 111 101",
  X: "101 101 010 101 101",
  Y: "101 101 010 010 010",
  Z: "111 001 010 100 111",
  "0": "111 101 101 101 111",
  "1": "010 110 010 010 111",
  "2": "110 001 010 100 111",
  "3": "110 001 010 001 110",
  "4": "101 101 111 001 001",
  "5": "111 100 110 001 110",
  "6": "011 100 111 101 111",
  "7": "111 001 010 010 010",
  "8": "111 101 111 101 111",
  "9": "111 101 111 001 110",
  ".": "000 000 000 000 010",
  ",": "000 000 000 010 100",
  ":": "000 010 000 010 000",
  "-": "000 000 111 000 000",
  "+": "000 010 111 010 000",
  "=": "000 111 000 111 000",
  "/": "001 001 010 100 100",
  "(": "001 010 010 010 001",
  ")": "100 010 010 010 100",
  "%": "101 001 010 100 101",
  "#": "101 111 101 111 101",
  " ": "000 000 000 000 000",
};

/** Glyph cell width including one column of spacing, in font pixels. */
export const FONT_ADVANCE = 4;
/** Glyph height in font pixels. */
export const FONT_HEIGHT = 5;

/** Width in image pixels of `text` drawn at `scale`. */
export function textWidth(text: string, scale = 1): number {
  return text.length === 0 ? 0 : (text.length * FONT_ADVANCE - 1) * scale;
}

/**
 * Draws `text` (upper-cased; unknown characters as '#') into an image with its top-left corner at
 * (x, y), each font pixel a scale×scale block; pixels outside the image are skipped.
 */
export function drawText(img: Image, text: string, x: number, y: number, color: Rgb, scale = 1): void {
  const { width, height, data } = img;
  let cx = x;
  for (const ch of text.toUpperCase()) {
    const rows = (GLYPHS[ch] ?? GLYPHS["#"]).split(" ");
    for (let r = 0; r < FONT_HEIGHT; r++) {
      for (let c = 0; c < 3; c++) {
        if (rows[r][c] !== "1") continue;
        for (let dy = 0; dy < scale; dy++) {
          const py = y + r * scale + dy;
          if (py < 0 || py >= height) continue;
          for (let dx = 0; dx < scale; dx++) {
            const px = cx + c * scale + dx;
            if (px < 0 || px >= width) continue;
            const o = (py * width + px) * 3;
            data[o] = color[0];
            data[o + 1] = color[1];
            data[o + 2] = color[2];
          }
        }
      }
    }
    cx += FONT_ADVANCE * scale;
  }
}
