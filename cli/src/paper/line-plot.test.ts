import { describe, expect, it } from "vitest";
import { drawLine, linePlot, ticks, yRange } from "./line-plot.js";

describe("line plot", () => {
  it("pads and rounds the y range outwards", () => {
    expect(yRange([0.5, 0.7])).toEqual([0.48, 0.72]);
    expect(yRange([0.6, 0.6])).toEqual([0.59, 0.61]);
    expect(yRange([])).toEqual([0, 1]);
  });

  it("spaces ticks evenly over the range", () => {
    expect(ticks(0, 1, 5)).toEqual([0, 0.25, 0.5, 0.75, 1]);
    expect(() => ticks(1, 0, 3)).toThrow(/bad range/);
  });

  it("draws a line through both end points", () => {
    const img = { height: 10, width: 10, data: new Float32Array(300).fill(1) };
    drawLine(img, 0, 0, 8, 4, [0, 0, 0]);
    const at = (x: number, y: number) => img.data[(y * 10 + x) * 3];
    expect(at(0, 0)).toBe(0);
    expect(at(8, 4)).toBe(0);
    expect(at(4, 2)).toBe(0);
    expect(at(0, 9)).toBe(1);
  });

  it("draws each series in its color at its points", () => {
    const img = linePlot(
      [
        {
          title: "T",
          series: [
            {
              label: "A",
              points: [
                { x: 0, y: 0 },
                { x: 1, y: 1 },
              ],
            },
          ],
        },
      ],
      { panelWidth: 200, height: 150 },
    );
    expect(img.width).toBe(200);
    let dark = 0;
    for (let i = 0; i < img.data.length; i += 3) if (img.data[i] < 0.2 && img.data[i + 1] < 0.2) dark++;
    expect(dark).toBeGreaterThan(100);
    expect(() => linePlot([])).toThrow(/no panels/);
  });
});
