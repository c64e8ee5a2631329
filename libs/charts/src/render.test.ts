import { describe, expect, it } from "vitest";
import { renderChart, renderChartSvg, svgToRgba } from "./render.js";
import { rewardChartOption } from "./reward-chart.js";

const option = rewardChartOption({
  panels: [
    {
      title: "Train prompts: mean reward",
      lines: [
        {
          name: "SPIN",
          x: [0, 1, 2],
          mean: [0.5, 0.55, 0.6],
          low: [0.45, 0.5, 0.52],
          high: [0.55, 0.6, 0.68],
        },
      ],
    },
  ],
});

/** Variance of the gray level over a rectangle of an RGBA raster. */
function grayVariance(
  r: { width: number; rgba: Uint8Array },
  x0: number,
  y0: number,
  w: number,
  h: number,
): number {
  let sum = 0;
  let sq = 0;
  for (let y = y0; y < y0 + h; y++) {
    for (let x = x0; x < x0 + w; x++) {
      const o = (y * r.width + x) * 4;
      const g = (r.rgba[o] + r.rgba[o + 1] + r.rgba[o + 2]) / 3;
      sum += g;
      sq += g * g;
    }
  }
  const n = w * h;
  return sq / n - (sum / n) ** 2;
}

describe("server-side chart rendering", () => {
  it("renders the option to an SVG with its title, axis names and legend as text", () => {
    const svg = renderChartSvg(option, { width: 480, height: 300 });
    expect(svg).toMatch(/^<svg[^>]* width="480" height="300"/);
    for (const text of ["Train prompts: mean reward", "iteration", "reward", "SPIN", "shaded: 95% CI"])
      expect(svg).toContain(text);
  });

  it("rasterises it to a PNG of the chart's size with the title's text drawn", () => {
    const { svg, png } = renderChart(option, { width: 480, height: 300 });
    expect(png.subarray(1, 4).toString("ascii")).toBe("PNG");
    // IHDR: width and height, big-endian, at bytes 16 and 20.
    expect([png.readUInt32BE(16), png.readUInt32BE(20)]).toEqual([480, 300]);
    const r = svgToRgba(svg);
    expect([r.width, r.height]).toEqual([480, 300]);
    // The title sits at the top left (x from 1 %, y from 10 px): glyphs make the gray level vary there;
    // the strip above it is blank.
    expect(grayVariance(r, 8, 10, 160, 16)).toBeGreaterThan(500);
    expect(grayVariance(r, 8, 0, 160, 6)).toBe(0);
  });

  it("refuses sizes that are not whole pixels", () => {
    expect(() => renderChartSvg(option, { width: 10.5, height: 300 })).toThrow(/whole pixels/);
  });
});
