import { describe, expect, it } from "vitest";
import type { Image } from "./image.js";
import { centerCrop, centerCropResize, cropImage, resizeImage, upscaleNearest } from "./resize.js";

/** A 1-channel-looking image: every channel of pixel (i, j) holds f(i, j). */
function gray(h: number, w: number, f: (i: number, j: number) => number): Image {
  const data = new Float32Array(h * w * 3);
  for (let i = 0; i < h; i++)
    for (let j = 0; j < w; j++) data.fill(f(i, j), (i * w + j) * 3, (i * w + j) * 3 + 3);
  return { height: h, width: w, data };
}
const at = (img: Image, i: number, j: number) => img.data[(i * img.width + j) * 3];

describe("resize", () => {
  it("area-downscales by 2 to the mean of each 2x2 block", () => {
    const img = gray(4, 4, (i, j) => (i * 4 + j) / 16);
    const out = resizeImage(img, 2, 2, "area");
    // Block (0,0) holds 0, 1, 4, 5 (/16): mean 2.5/16.
    expect(at(out, 0, 0)).toBeCloseTo(2.5 / 16, 6);
    expect(at(out, 0, 1)).toBeCloseTo(4.5 / 16, 6);
    expect(at(out, 1, 1)).toBeCloseTo(12.5 / 16, 6);
  });

  it("area-downscales by a fractional factor with overlap weights (3 -> 2)", () => {
    const img = gray(1, 3, (_i, j) => [0, 0.3, 0.9][j]);
    const out = resizeImage(img, 1, 2, "area");
    // Output pixel 0 covers source [0, 1.5): (1·0 + 0.5·0.3)/1.5; pixel 1 covers [1.5, 3): (0.5·0.3 + 1·0.9)/1.5.
    expect(at(out, 0, 0)).toBeCloseTo(0.15 / 1.5, 6);
    expect(at(out, 0, 1)).toBeCloseTo(1.05 / 1.5, 6);
  });

  it("bilinear-upscales with half-pixel centres and clamped edges (2 -> 4)", () => {
    const img = gray(1, 2, (_i, j) => [0, 1][j]);
    const out = resizeImage(img, 1, 4, "bilinear");
    // Output centres map to source x = -0.25, 0.25, 0.75, 1.25 -> clamp(0), 0.25, 0.75, clamp(1).
    expect([0, 1, 2, 3].map((j) => at(out, 0, j))).toEqual([0, 0.25, 0.75, 1]);
  });

  it("keeps a constant image constant in every mode", () => {
    const img = gray(37, 23, () => 0.42);
    for (const mode of ["area", "bilinear", "auto"] as const) {
      for (const [h, w] of [
        [16, 16],
        [50, 9],
      ]) {
        const out = resizeImage(img, h, w, mode);
        for (const v of out.data) expect(v).toBeCloseTo(0.42, 5);
      }
    }
  });

  it("centre-crops the largest square and resizes it", () => {
    const img = gray(4, 6, (_i, j) => j);
    const sq = centerCrop(img);
    expect([sq.height, sq.width]).toEqual([4, 4]);
    expect([0, 1, 2, 3].map((j) => at(sq, 0, j))).toEqual([1, 2, 3, 4]);
    const small = centerCropResize(img, 2);
    expect(at(small, 0, 0)).toBeCloseTo(1.5, 6);
    expect(at(small, 1, 1)).toBeCloseTo(3.5, 6);
    const tall = centerCrop(gray(5, 2, (i) => i));
    expect([0, 1].map((i) => at(tall, i, 0))).toEqual([1, 2]);
  });

  it("crops, upscales by pixel replication, and refuses bad sizes", () => {
    const img = gray(3, 3, (i, j) => i * 3 + j);
    expect(Array.from(cropImage(img, 1, 1, 2, 2).data.filter((_, k) => k % 3 === 0))).toEqual([4, 5, 7, 8]);
    const up = upscaleNearest(
      gray(1, 2, (_i, j) => j),
      2,
    );
    expect([up.height, up.width]).toEqual([2, 4]);
    expect([0, 1, 2, 3].map((j) => at(up, 1, j))).toEqual([0, 0, 1, 1]);
    expect(() => resizeImage(img, 0, 2)).toThrow(/positive integers/);
    expect(() => cropImage(img, 2, 2, 2, 2)).toThrow(/outside/);
  });
});
