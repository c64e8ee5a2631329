import { describe, expect, it } from "vitest";
import { DataRng } from "./data-rng.js";
import { solidImage } from "./image.js";
import { BACKGROUNDS, COLORS, SHAPES, SIZE_RADIUS } from "./shapes-grammar.js";
import {
  DEFAULT_DEGRADE,
  gaussianBlurInPlace,
  renderDegraded,
  renderIdeal,
  renderShape,
} from "./shapes-render.js";

/** Coverage of each pixel recovered from a render of white on black (the red channel). */
function coverage(
  shape: (typeof SHAPES)[number],
  size: number,
  radius: number,
  cx = 0.5,
  cy = 0.5,
): Float64Array {
  const img = renderShape({ shape, cx, cy, radius, color: [1, 1, 1], bg: [0, 0, 0] }, size);
  const cov = new Float64Array(size * size);
  for (let k = 0; k < cov.length; k++) cov[k] = img.data[k * 3];
  return cov;
}

describe("renderShape / renderIdeal", () => {
  it("gives every shape the circle's area π r² (exact for the polygons, within 0.3 % for the circle)", () => {
    for (const shape of SHAPES) {
      for (const size of [16, 32, 64]) {
        const r = 0.28;
        const cov = coverage(shape, size, r);
        let sum = 0;
        for (const c of cov) sum += c;
        const rel = Math.abs(sum / (size * size) - Math.PI * r * r) / (Math.PI * r * r);
        // Polygons: exact up to the float32 pixel values.
        expect(rel).toBeLessThan(shape === "circle" ? 0.003 : 1e-7);
      }
    }
  });

  it("centres the circle and square, and puts the triangle's centroid at the centre with its apex up", () => {
    const size = 64;
    for (const shape of SHAPES) {
      const cov = coverage(shape, size, 0.3);
      let m = 0;
      let mi = 0;
      let mj = 0;
      for (let i = 0; i < size; i++) {
        for (let j = 0; j < size; j++) {
          const c = cov[i * size + j];
          m += c;
          mi += c * (i + 0.5);
          mj += c * (j + 0.5);
        }
      }
      // Pixel-centre moments of partly covered pixels only approximate the true centroid (exact for the square).
      expect(mi / m / size).toBeCloseTo(0.5, shape === "square" ? 10 : 4);
      expect(mj / m / size).toBeCloseTo(0.5, shape === "square" ? 10 : 4);
    }
    // Triangle: rows above the centre are narrower than rows below (apex up).
    const tri = coverage("triangle", size, 0.3);
    const rowSum = (i: number) => tri.slice(i * size, (i + 1) * size).reduce((a, b) => a + b, 0);
    expect(rowSum(20)).toBeLessThan(rowSum(40));
    // Its top edge: apex at 0.5 − (2/3)·H with H = √3/2·a and a = 2r·√(π/√3).
    const a = 2 * 0.3 * Math.sqrt(Math.PI / Math.sqrt(3));
    const apexRow = (0.5 - (2 / 3) * (Math.sqrt(3) / 2) * a) * size;
    expect(rowSum(Math.floor(apexRow) - 1)).toBe(0);
    expect(rowSum(Math.ceil(apexRow) + 1)).toBeGreaterThan(0);
  });

  it("anti-aliases: edge pixels take intermediate values, a pixel-aligned square does not", () => {
    const circle = coverage("circle", 16, 0.3);
    expect(circle.some((c) => c > 0.05 && c < 0.95)).toBe(true);
    // Half-side r·√π/2 = 4 pixels on a 16 image: the square covers pixels 4..11 exactly.
    const r = 8 / (16 * Math.sqrt(Math.PI));
    const sq = coverage("square", 16, r);
    for (let i = 0; i < 16; i++) {
      for (let j = 0; j < 16; j++) {
        const inside = i >= 4 && i < 12 && j >= 4 && j < 12;
        expect(sq[i * 16 + j]).toBeCloseTo(inside ? 1 : 0, 12);
      }
    }
  });

  it("renders the prompt's palette colors and radius", () => {
    const img = renderIdeal("a large orange circle on a navy background", 32);
    const centre = (16 * 32 + 16) * 3;
    expect(Array.from(img.data.subarray(centre, centre + 3))).toEqual(
      Array.from(new Float32Array(COLORS.orange)),
    );
    expect(Array.from(img.data.subarray(0, 3))).toEqual(Array.from(new Float32Array(BACKGROUNDS.navy)));
    const cov = coverage("circle", 32, SIZE_RADIUS.large);
    expect(cov.reduce((a, b) => a + b, 0) / 1024).toBeCloseTo(Math.PI * 0.38 * 0.38, 2);
  });
});

describe("renderDegraded", () => {
  const prompt = "a medium green square on a white background";

  it("is deterministic from the generator state", () => {
    const a = renderDegraded(prompt, 16, 0.7, new DataRng(5));
    const b = renderDegraded(prompt, 16, 0.7, new DataRng(5));
    expect(a.image.data).toEqual(b.image.data);
    expect(a.info).toEqual(b.info);
    const c = renderDegraded(prompt, 16, 0.7, new DataRng(6));
    expect(c.image.data).not.toEqual(a.image.data);
  });

  it("at u = 0 without wrong-shape/color events equals the ideal render", () => {
    const cfg = { ...DEFAULT_DEGRADE, wrongShapeProb: 0, wrongColorProb: 0 };
    const d = renderDegraded(prompt, 16, 0, new DataRng(1), cfg);
    expect(d.image.data).toEqual(renderIdeal(prompt, 16).data);
    expect(d.info.blurSigma).toBe(0);
  });

  it("scales its perturbations with u as configured (offset std 0.10u, log-scale std 0.35u, blur up to 1.2u)", () => {
    const rng = new DataRng(11);
    const n = 4000;
    let sx = 0;
    let sl = 0;
    let maxBlur = 0;
    let wrongShape = 0;
    let wrongColor = 0;
    for (let i = 0; i < n; i++) {
      const { info } = renderDegraded(prompt, 8, 1, rng);
      sx += info.offsetX * info.offsetX;
      sl += Math.log(info.scale) ** 2;
      maxBlur = Math.max(maxBlur, info.blurSigma);
      if (info.shape !== "square") wrongShape++;
      if (info.colorName !== "green") wrongColor++;
      expect(info.noiseStd).toBeCloseTo(0.12, 12);
    }
    expect(Math.sqrt(sx / n)).toBeCloseTo(0.1, 2);
    expect(Math.sqrt(sl / n)).toBeCloseTo(0.35, 1);
    expect(maxBlur).toBeLessThanOrEqual(1.2);
    expect(maxBlur).toBeGreaterThan(1.1);
    expect(Math.abs(wrongShape / n - 0.06)).toBeLessThan(0.015);
    expect(Math.abs(wrongColor / n - 0.06)).toBeLessThan(0.015);
  });

  it("keeps pixels in [0, 1] and refuses a bad strength or prompt", () => {
    const { image } = renderDegraded(prompt, 16, 1, new DataRng(2));
    for (const v of image.data) expect(v >= 0 && v <= 1).toBe(true);
    expect(() => renderDegraded(prompt, 16, 1.5, new DataRng(2))).toThrow(/strength u/);
    expect(() => renderDegraded("a red blob", 16, 0.5, new DataRng(2))).toThrow(/grammar/);
  });
});

describe("gaussianBlurInPlace", () => {
  it("leaves a constant image unchanged and spreads an impulse with the right variance", () => {
    const flat = solidImage(9, 9, [0.3, 0.6, 0.9]);
    gaussianBlurInPlace(flat, 1.3);
    for (let k = 0; k < flat.data.length; k++) expect(flat.data[k]).toBeCloseTo([0.3, 0.6, 0.9][k % 3], 6);
    const size = 31;
    const img = solidImage(size, size, [0, 0, 0]);
    img.data[(15 * size + 15) * 3] = 1;
    gaussianBlurInPlace(img, 2);
    let total = 0;
    let varI = 0;
    for (let i = 0; i < size; i++) {
      for (let j = 0; j < size; j++) {
        const v = img.data[(i * size + j) * 3];
        total += v;
        varI += v * (i - 15) ** 2;
      }
    }
    expect(total).toBeCloseTo(1, 5);
    // A kernel truncated at 3σ keeps ~98.9 % of the variance σ² = 4.
    expect(varI / total).toBeGreaterThan(3.8);
    expect(varI / total).toBeLessThan(4.0);
  });
});
