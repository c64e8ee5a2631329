import { describe, expect, it } from "vitest";
import { bandSeries } from "./band.js";

describe("bandSeries", () => {
  it("stacks the band's width on its lower end", () => {
    const b = bandSeries([0.25, 0.5], [0.75, 0.625]);
    expect(b.base).toEqual([0.25, 0.5]);
    expect(b.width).toEqual([0.5, 0.125]);
  });

  it("keeps negative lower ends (the chart stacks with stackStrategy all)", () => {
    expect(bandSeries([-0.5], [0.25])).toEqual({ base: [-0.5], width: [0.75] });
  });

  it("leaves a gap where an end is missing and refuses inverted or mismatched bands", () => {
    expect(bandSeries([0.5, null], [0.75, 1])).toEqual({ base: [0.5, null], width: [0.25, null] });
    expect(() => bandSeries([1], [])).toThrow(/1 lower ends but 0 upper/);
    expect(() => bandSeries([1], [0.5])).toThrow(/upper end 0.5 below its lower end 1/);
  });
});
