import type { BarSeriesOption } from "echarts";
import { describe, expect, it } from "vitest";
import { histogramChartOption } from "./histogram-chart.js";

describe("histogramChartOption", () => {
  it("puts each bin's bar at its centre over the bins' range, the legend with each series' size", () => {
    const o = histogramChartOption({
      edges: [0, 0.25, 0.5],
      series: [
        { name: "winners", counts: [1, 3], n: 5 },
        { name: "losers", counts: [2, 0], n: 2 },
      ],
    });
    const series = o.series as BarSeriesOption[];
    expect(series.map((s) => s.name)).toEqual(["winners (n=5)", "losers (n=2)"]);
    expect(series[0].data).toEqual([
      [0.125, 1],
      [0.375, 3],
    ]);
    expect(o.xAxis).toMatchObject({ type: "value", min: 0, max: 0.5 });
    expect(o.yAxis).toMatchObject({ min: 0, minInterval: 1 });
  });

  it("refuses bad edges and mismatched counts", () => {
    expect(() => histogramChartOption({ edges: [0], series: [] })).toThrow(/two edges/);
    expect(() => histogramChartOption({ edges: [0, 0], series: [{ name: "a", counts: [1], n: 1 }] })).toThrow(
      /not increasing/,
    );
    expect(() =>
      histogramChartOption({ edges: [0, 1], series: [{ name: "a", counts: [1, 2], n: 3 }] }),
    ).toThrow(/"a" has 2 counts for 1 bins/);
  });
});
