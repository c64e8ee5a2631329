import type { LineSeriesOption } from "echarts";
import { describe, expect, it } from "vitest";
import { curveChartOption } from "./curve-chart.js";

describe("curveChartOption", () => {
  it("plots each metric against the step, with a legend only for several metrics", () => {
    const o = curveChartOption({
      title: "model vs reference loss",
      steps: [10, 20],
      series: [
        { name: "raw_model_loss", values: [0.1, null] },
        { name: "ref_loss", values: [0.2, 0.19] },
      ],
    });
    const series = o.series as LineSeriesOption[];
    expect(series.map((s) => s.name)).toEqual(["raw_model_loss", "ref_loss"]);
    expect(series[0].data).toEqual([
      [10, 0.1],
      [20, null],
    ]);
    expect(series[0].connectNulls).toBe(true);
    expect(o.legend).toBeDefined();
    const one = curveChartOption({ title: "loss", steps: [1], series: [{ name: "loss", values: [1] }] });
    expect(one.legend).toBeUndefined();
  });

  it("refuses a metric with the wrong number of values", () => {
    expect(() =>
      curveChartOption({ title: "loss", steps: [1, 2], series: [{ name: "loss", values: [1] }] }),
    ).toThrow(/"loss" has 1 values for 2 steps/);
  });
});
