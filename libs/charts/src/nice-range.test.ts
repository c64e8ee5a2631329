import { describe, expect, it } from "vitest";
import { extent, niceRange, niceStep } from "./nice-range.js";

describe("niceStep", () => {
  it("rounds up to 1, 2, 2.5 or 5 times a power of ten", () => {
    expect(niceStep(0.013)).toBe(0.02);
    expect(niceStep(0.022)).toBe(0.025);
    expect(niceStep(0.3)).toBe(0.5);
    expect(niceStep(7)).toBe(10);
    expect(niceStep(1)).toBe(1);
    expect(() => niceStep(0)).toThrow(/positive/);
  });
});

describe("niceRange", () => {
  it("pads the data by 5 % a side and rounds outwards to round ticks", () => {
    // [0.42, 0.66]: span 0.24, pad 0.012 -> [0.408, 0.672]; step nice(0.264 / 5 = 0.0528) = 0.1
    // -> [0.4, 0.7].
    expect(niceRange(0.42, 0.66)).toEqual({ min: 0.4, max: 0.7, interval: 0.1 });
  });

  it("widens a flat range to the minimum span around its middle", () => {
    // [0.5, 0.5] -> [0.49, 0.51], pad 0.001 -> [0.489, 0.511]; step nice(0.0044) = 0.005 -> [0.485, 0.515].
    expect(niceRange(0.5, 0.5)).toEqual({ min: 0.485, max: 0.515, interval: 0.005 });
  });

  it("handles negative rewards", () => {
    // [-1.2, -0.3]: pad 0.045 -> [-1.245, -0.255]; step nice(0.198) = 0.2 -> [-1.4, -0.2].
    expect(niceRange(-1.2, -0.3)).toEqual({ min: -1.4, max: -0.2, interval: 0.2 });
  });

  it("refuses a reversed or non-finite range", () => {
    expect(() => niceRange(1, 0)).toThrow(/bad data range/);
    expect(() => niceRange(0, Number.NaN)).toThrow(/bad data range/);
  });
});

describe("extent", () => {
  it("skips nulls and non-finite values", () => {
    expect(extent([0.3, null, Number.NaN, -1, 2])).toEqual([-1, 2]);
    expect(extent([null])).toBeUndefined();
  });
});
