import { describe, expect, it } from "vitest";
import { meanCI, quantile, quantiles, studentTCdf, studentTQuantile } from "./stats.js";

describe("Student t", () => {
  it("matches tabulated 97.5 % quantiles", () => {
    expect(studentTQuantile(0.975, 1)).toBeCloseTo(12.706204736174696, 8);
    expect(studentTQuantile(0.975, 4)).toBeCloseTo(2.7764451051977987, 9);
    expect(studentTQuantile(0.975, 10)).toBeCloseTo(2.2281388519649385, 9);
    expect(studentTQuantile(0.975, 30)).toBeCloseTo(2.0422724563012373, 9);
    expect(studentTQuantile(0.975, 1e7)).toBeCloseTo(1.959964, 5);
    expect(studentTQuantile(0.025, 10)).toBeCloseTo(-2.2281388519649385, 9);
    // df = 1 is Cauchy: CDF(t) = 1/2 + atan(t)/π.
    expect(studentTCdf(0.7, 1)).toBeCloseTo(0.5 + Math.atan(0.7) / Math.PI, 12);
  });
});

describe("meanCI", () => {
  it("computes mean ± t·s/√n by hand for 1..5", () => {
    const ci = meanCI([1, 2, 3, 4, 5]);
    const half = (2.7764451051977987 * Math.sqrt(2.5)) / Math.sqrt(5);
    expect(ci.mean).toBe(3);
    expect(ci.std).toBeCloseTo(Math.sqrt(2.5), 12);
    expect(ci.halfWidth).toBeCloseTo(half, 9);
    expect(ci.lo).toBeCloseTo(3 - half, 9);
    expect(ci.hi).toBeCloseTo(3 + half, 9);
    expect(ci.level).toBe(0.95);
  });

  it("is undefined (NaN) for one value and refuses none or non-finite values", () => {
    const one = meanCI([0.7]);
    expect(one.mean).toBe(0.7);
    expect(Number.isNaN(one.halfWidth)).toBe(true);
    expect(() => meanCI([])).toThrow(/no values/);
    expect(() => meanCI([1, Number.NaN])).toThrow(/value 1 is NaN/);
  });
});

describe("quantiles", () => {
  it("interpolates linearly like numpy", () => {
    expect(quantile([4, 1, 3, 2], 0.5)).toBe(2.5);
    expect(quantiles([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [0.05, 0.5, 0.95])).toEqual([0.5, 5, 9.5]);
    expect(quantile([3], 0.3)).toBe(3);
    expect(() => quantile([], 0.5)).toThrow(/no values/);
  });
});
