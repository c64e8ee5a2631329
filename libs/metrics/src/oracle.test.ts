import { type Image, solidImage, stackImages } from "@idpo/data";
import { describe, expect, it } from "vitest";
import { combineOracle, oracleReward, oracleRewardBatch } from "./oracle.js";

const RED = [0.9, 0.1, 0.1] as const;

/** An S×S image of background `bg` with the listed pixels set to colors. */
function paint(s: number, bg: readonly number[], pixels: [number, number, readonly number[]][]): Image {
  const img = solidImage(s, s, [bg[0], bg[1], bg[2]]);
  for (const [i, j, c] of pixels) img.data.set(c, (i * s + j) * 3);
  return img;
}

describe("oracleReward on hand-made images", () => {
  it("pure background: only the bg term, R = 0.15", () => {
    const r = oracleReward(solidImage(4, 4, [0, 0, 0]), "a small red circle on a black background");
    expect(r).toEqual({ reward: 0.15, color: 0, bg: 1, shape: 0, size: 0, center: 0, clean: 0 });
  });

  it("a 2x2 red square in a 4x4 black image", () => {
    const img = paint(
      4,
      [0, 0, 0],
      [
        [1, 1, RED],
        [1, 2, RED],
        [2, 1, RED],
        [2, 2, RED],
      ],
    );
    const r = oracleReward(img, "a small red square on a black background");
    // d(red) = ‖(0.9, 0.1, 0.1)‖/√3 = 0.526 -> m = 1 on the 4 pixels, 0 elsewhere; border all black.
    expect(r.bg).toBeCloseTo(1, 6);
    expect(r.color).toBeCloseTo(1, 6);
    expect(r.center).toBeCloseTo(1, 12); // centroid ((1.5 + 2.5)/2/4, same) = (0.5, 0.5)
    expect(r.size).toBeCloseTo((Math.PI * 0.18 ** 2) / (4 / 16), 12); // A = 4/16 > a* = π·0.18²
    expect(r.shape).toBeCloseTo(1, 12); // f = 4/(2·2) = 1 = f*(square)
    expect(r.clean).toBe(0); // every red pixel touches the black border ring: no interior pixel
    expect(r.reward).toBeCloseTo(0.2 + 0.15 + 0.2 + 0.15 * ((Math.PI * 0.0324) / 0.25) + 0.15, 6);
  });

  it("a 4x4 white square with two darker interior pixels in a 6x6 black image (clean score)", () => {
    const pixels: [number, number, readonly number[]][] = [];
    for (let i = 1; i <= 4; i++) for (let j = 1; j <= 4; j++) pixels.push([i, j, [1, 1, 1]]);
    pixels.push([2, 2, [0.9, 0.9, 0.9]], [3, 3, [0.9, 0.9, 0.9]]);
    const r = oracleReward(paint(6, [0, 0, 0], pixels), "a medium white square on a black background");
    // Mean color (14·1 + 2·0.9)/16 = 0.9875 per channel: color = 1 − 0.0125.
    expect(r.color).toBeCloseTo(0.9875, 6);
    expect(r.bg).toBe(1);
    expect(r.center).toBeCloseTo(1, 12);
    expect(r.size).toBeCloseTo((Math.PI * 0.28 ** 2) / (16 / 36), 12);
    expect(r.shape).toBeCloseTo(1, 12);
    // Interior = the central 2x2 {0.9, 1, 1, 0.9}: std 0.05 per channel -> clean = 1 − 0.05/0.1.
    expect(r.clean).toBeCloseTo(0.5, 6);
    const expected = 0.2 * 0.9875 + 0.15 + 0.2 + 0.15 * ((Math.PI * 0.0784) / (16 / 36)) + 0.15 + 0.15 * 0.5;
    expect(r.reward).toBeCloseTo(expected, 6);
  });

  it("an L of three red pixels: off-centre centroid and the fill fraction of its bounding box", () => {
    const img = paint(
      4,
      [0, 0, 0],
      [
        [1, 1, RED],
        [2, 1, RED],
        [2, 2, RED],
      ],
    );
    const r = oracleReward(img, "a small red circle on a black background");
    // μ = rows (1.5 + 2.5 + 2.5)/(3·4), cols (1.5 + 1.5 + 2.5)/(3·4).
    const dist = Math.hypot(6.5 / 12 - 0.5, 5.5 / 12 - 0.5);
    expect(r.center).toBeCloseTo(1 - dist / 0.5, 12);
    // h = 2 rows, w = 2 cols: f = 3/4 against f*(circle) = π/4.
    expect(r.shape).toBeCloseTo(Math.exp(-(((0.75 - Math.PI / 4) / 0.15) ** 2)), 12);
    expect(r.size).toBeCloseTo((Math.PI * 0.0324) / (3 / 16), 12); // A = 3/16 > a* = 0.1018
    const tri = oracleReward(img, "a small red triangle on a black background");
    expect(tri.shape).toBeCloseTo(Math.exp(-(((0.75 - 0.5) / 0.15) ** 2)), 12);
  });

  // Pixels are float32, so values such as 0.9 or 0.3 are off by ~1e-8: 6-digit checks where they enter.
  it("soft mask: a half-foreground border pixel counts half in area, color, centroid and extents", () => {
    const q = [0.25, 0.25, 0.25]; // d = 0.25 -> m = (0.25 − 0.15)/0.2 = 0.5
    const img = paint(
      4,
      [0, 0, 0],
      [
        [0, 1, q],
        [1, 1, RED],
        [1, 2, RED],
        [2, 1, RED],
        [2, 2, RED],
      ],
    );
    const r = oracleReward(img, "a small red square on a black background");
    const M = 4.5;
    expect(r.bg).toBeCloseTo(1 - 0.25 / 12, 12);
    const cbar = [0, 1, 2].map((c) => (4 * RED[c] + 0.5 * 0.25) / M);
    expect(r.color).toBeCloseTo(
      1 - Math.hypot(cbar[0] - 0.9, cbar[1] - 0.1, cbar[2] - 0.1) / Math.sqrt(3),
      6,
    );
    const mi = (0.5 * 0.5 + 2 * 1.5 + 2 * 2.5) / 4 / M;
    const mj = (0.5 * 1.5 + 2 * 1.5 + 2 * 2.5) / 4 / M;
    expect(r.center).toBeCloseTo(1 - Math.hypot(mi - 0.5, mj - 0.5) / 0.5, 12);
    // h = 0.5 + 1 + 1 = 2.5, w = 1 + 1 = 2: f = 4.5/5.
    expect(r.shape).toBeCloseTo(Math.exp(-(((0.9 - 1) / 0.15) ** 2)), 12);
    expect(r.size).toBeCloseTo((Math.PI * 0.0324) / (M / 16), 12);
    expect(r.reward).toBeCloseTo(combineOracle(r), 12);
  });

  it("below one pixel of mask every shape term is 0 and only the bg term remains", () => {
    // One border pixel at 0.3 gray: d = 0.3, m = 0.75 < 1.
    const img = paint(4, [0, 0, 0], [[0, 0, [0.3, 0.3, 0.3]]]);
    const r = oracleReward(img, "a large cyan circle on a black background");
    expect(r.bg).toBeCloseTo(1 - 0.3 / 12, 7);
    expect([r.color, r.shape, r.size, r.center, r.clean]).toEqual([0, 0, 0, 0, 0]);
    expect(r.reward).toBeCloseTo(0.15 * (1 - 0.025), 7);
  });

  it("accepts a parsed prompt, scores batches, and names bad input", () => {
    const img = solidImage(4, 4, [1, 1, 1]);
    const parsed = { size: "small", color: "red", shape: "circle", bg: "black" } as const;
    expect(oracleReward(img, parsed)).toEqual(oracleReward(img, "a small red circle on a black background"));
    const batch = stackImages([img, solidImage(4, 4, [0, 0, 0])]);
    const rs = oracleRewardBatch(batch, [parsed, "a small red circle on a black background"]);
    expect(rs[1].reward).toBe(0.15);
    expect(rs[0]).toEqual(oracleReward(img, parsed));
    expect(() => oracleRewardBatch(batch, [parsed, "a dog"])).toThrow(
      /prompt 1: .*outside the shapes grammar/,
    );
    expect(() => oracleReward({ height: 4, width: 5, data: new Float32Array(60) }, parsed)).toThrow(/square/);
    expect(() => oracleReward({ height: 4, width: 4, data: new Float32Array(10) }, parsed)).toThrow(
      /expected 48/,
    );
  });
});
