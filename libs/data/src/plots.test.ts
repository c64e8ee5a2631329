import { describe, expect, it } from "vitest";
import { solidImage } from "./image.js";
import { composeGrid, histogram, histogramImage, textHistogram } from "./plots.js";

describe("histogram", () => {
  it("counts values into equal bins, the maximum into the last bin", () => {
    const h = histogram([0, 0.1, 0.25, 0.5, 0.99, 1, 1.2, -0.1, Number.NaN], 4, 0, 1);
    expect(h.edges).toEqual([0, 0.25, 0.5, 0.75, 1]);
    expect(h.counts).toEqual([2, 1, 1, 2]);
    expect([h.under, h.over, h.skipped]).toEqual([1, 1, 1]);
    expect(() => histogram([1], 0, 0, 1)).toThrow(/bins/);
  });

  it("prints one line per bin with bars scaled to the largest count", () => {
    const text = textHistogram(
      [
        { label: "winners", values: [0.9, 0.95, 0.8, 0.85] },
        { label: "losers", values: [0.1, 0.6] },
      ],
      { bins: 2, barWidth: 10 },
    );
    const lines = text.split("\n");
    expect(lines[0]).toMatch(/^bin\s+winners \(n=4\)\s+losers \(n=2\)$/);
    expect(lines[1]).toBe(
      `${"[0.00, 0.50)".padEnd(13)}  ${" ".repeat(10)} 0  ${"#".repeat(3)}${" ".repeat(7)} 1`,
    );
    expect(lines[2]).toBe(
      `${"[0.50, 1.00]".padEnd(13)}  ${"#".repeat(10)} 4  ${"#".repeat(3)}${" ".repeat(7)} 1`,
    );
  });

  it("draws bars of the series colors with heights proportional to counts", () => {
    const img = histogramImage([{ label: "w", values: [0.1, 0.6, 0.7] }], {
      bins: 2,
      width: 200,
      height: 150,
    });
    expect([img.height, img.width]).toEqual([150, 200]);
    // Count the green bar columns' heights: the right bin (2 values) is twice the left (1 value).
    const green = (i: number, j: number) => {
      const o = (i * img.width + j) * 3;
      return Math.abs(img.data[o] - 0.16) < 1e-6 && Math.abs(img.data[o + 1] - 0.6) < 1e-6;
    };
    // Per column, the green run that ends at the column's lowest green pixel (the bar standing on the axis;
    // the legend swatch above is separated from it by white).
    const heights: number[] = [];
    for (let j = 0; j < img.width; j++) {
      let i = img.height - 1;
      while (i >= 0 && !green(i, j)) i--;
      let hgt = 0;
      while (i >= 0 && green(i, j)) {
        hgt++;
        i--;
      }
      if (hgt > 0) heights.push(hgt);
    }
    const distinct = [...new Set(heights)].sort((a, b) => b - a);
    expect(distinct.length).toBe(2);
    expect(distinct[0] / distinct[1]).toBeCloseTo(2, 1);
  });
});

describe("composeGrid", () => {
  it("places cells with padding, scaling each image", () => {
    const red = solidImage(2, 2, [1, 0, 0]);
    const blue = solidImage(2, 2, [0, 0, 1]);
    const g = composeGrid([[red, blue], [blue]], { padding: 1, scale: 2, background: [0, 0, 0] });
    // Cells 4x4 (2x2 scaled by 2), padding 1: width 1 + 2*(4+1) = 11, height the same.
    expect([g.height, g.width]).toEqual([11, 11]);
    const px = (i: number, j: number) => Array.from(g.data.subarray((i * 11 + j) * 3, (i * 11 + j) * 3 + 3));
    expect(px(0, 0)).toEqual([0, 0, 0]);
    expect(px(1, 1)).toEqual([1, 0, 0]);
    expect(px(4, 4)).toEqual([1, 0, 0]);
    expect(px(1, 5)).toEqual([0, 0, 0]);
    expect(px(1, 6)).toEqual([0, 0, 1]);
    expect(px(6, 1)).toEqual([0, 0, 1]);
    expect(px(6, 6)).toEqual([0, 0, 0]);
  });
});
