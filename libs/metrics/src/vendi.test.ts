import { type Image, solidImage } from "@idpo/data";
import { describe, expect, it } from "vitest";
import { symmetricEigenvalues, vendiFromEigenvalues, vendiScore } from "./vendi.js";

const px = (r: number, g: number, b: number): Image => solidImage(1, 1, [r, g, b]);

describe("symmetricEigenvalues (Jacobi)", () => {
  it("returns a diagonal matrix's diagonal, sorted", () => {
    expect(Array.from(symmetricEigenvalues([3, 0, 0, 0, -1, 0, 0, 0, 2], 3))).toEqual([-1, 2, 3]);
    expect(Array.from(symmetricEigenvalues([], 0))).toEqual([]);
  });

  it("solves 2x2 matrices: (a+d)/2 ± √(((a−d)/2)² + b²)", () => {
    const [a, b, d] = [2, 1.5, -0.5];
    const m = (a + d) / 2;
    const r = Math.sqrt(((a - d) / 2) ** 2 + b * b);
    const ev = symmetricEigenvalues([a, b, b, d], 2);
    expect(ev[0]).toBeCloseTo(m - r, 12);
    expect(ev[1]).toBeCloseTo(m + r, 12);
  });

  it("recovers the spectrum of Q Λ Qᵀ for a Householder Q, n = 60", () => {
    const n = 60;
    const lambda = Array.from({ length: n }, (_, i) => (i % 7) - 2 + i / 10);
    const v = Array.from({ length: n }, (_, i) => Math.sin(i + 1));
    const vv = v.reduce((s, x) => s + x * x, 0);
    const q = (i: number, j: number) => (i === j ? 1 : 0) - (2 * v[i] * v[j]) / vv;
    const a = new Float64Array(n * n);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let k = 0; k < n; k++) s += q(i, k) * lambda[k] * q(j, k);
        a[i * n + j] = s;
      }
    }
    // Symmetrise the rounding so the input is exactly symmetric.
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) a[j * n + i] = a[i * n + j];
    const ev = symmetricEigenvalues(a, n);
    const want = lambda.slice().sort((x, y) => x - y);
    for (let i = 0; i < n; i++) expect(ev[i]).toBeCloseTo(want[i], 9);
  });

  it("refuses non-symmetric or mis-sized input", () => {
    expect(() => symmetricEigenvalues([1, 2, 3, 4], 2)).toThrow(/not symmetric at \(0, 1\)/);
    expect(() => symmetricEigenvalues([1, 2, 3], 2)).toThrow(/expected 4/);
  });
});

describe("vendiScore", () => {
  it("is 1 for identical images (and for images equal up to contrast around 0.5)", () => {
    const a = px(0.9, 0.2, 0.4);
    const b = px(0.5 + 2 * 0.4, 0.5 - 2 * 0.3, 0.5 - 2 * 0.1);
    expect(vendiScore([a, a, a, a])).toBeCloseTo(1, 12);
    expect(vendiScore([a, b])).toBeCloseTo(1, 6);
  });

  it("is n for n mutually orthogonal images", () => {
    // Centred vectors (0.5, 0, 0), (0, 0.5, 0), (0, 0, −0.5): orthogonal, so K/n = I/3 and VS = exp(log 3).
    expect(vendiScore([px(1, 0.5, 0.5), px(0.5, 1, 0.5), px(0.5, 0.5, 0)])).toBeCloseTo(3, 12);
  });

  it("matches the closed form for two images at 45°: λ = (1 ± cos θ)/2", () => {
    // e1 = (1, 0, 0), e2 = (1, 1, 0)/√2: cos θ = 1/√2.
    const c = Math.SQRT1_2;
    const l1 = (1 + c) / 2;
    const l2 = (1 - c) / 2;
    expect(vendiScore([px(1, 0.5, 0.5), px(1, 1, 0.5)])).toBeCloseTo(
      Math.exp(-(l1 * Math.log(l1) + l2 * Math.log(l2))),
      12,
    );
  });

  it("takes a batch as well as a list, and clips negative eigenvalues", () => {
    const imgs = [px(1, 0.5, 0.5), px(1, 1, 0.5), px(0.2, 0.1, 0.9)];
    const batch = {
      n: 3,
      height: 1,
      width: 1,
      channels: 3 as const,
      data: new Float32Array(imgs.flatMap((i) => [...i.data])),
    };
    expect(vendiScore(batch)).toBeCloseTo(vendiScore(imgs), 12);
    expect(vendiFromEigenvalues([0.5, 0.5, -1e-17, 0])).toBeCloseTo(2, 12);
    expect(() => vendiScore([])).toThrow(/no images/);
    expect(() => vendiScore([px(1, 1, 1), solidImage(2, 1, [1, 1, 1])])).toThrow(/image 1 is 2x1/);
  });
});
