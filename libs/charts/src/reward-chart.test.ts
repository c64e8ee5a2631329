import type { LineSeriesOption } from "echarts";
import { describe, expect, it } from "vitest";
import { BAND_OPACITY, CROWDED_BAND_OPACITY, PALETTE } from "./palette.js";
import { iterationLabel, rewardChartOption } from "./reward-chart.js";

const spin = {
  name: "SPIN",
  x: [0, 1, 2],
  mean: [0.5, 0.55, 0.6],
  low: [0.45, 0.5, 0.52],
  high: [0.55, 0.6, 0.68],
};
const ours = { name: "Ours", x: [2, 3], mean: [0.6, 0.66], low: [0.55, 0.62], high: [0.65, 0.7] };

function option() {
  return rewardChartOption({
    panels: [
      { title: "Train", lines: [spin, ours] },
      { title: "Test", lines: [spin] },
    ],
  });
}

describe("rewardChartOption", () => {
  it("draws each line as its mean and a band stacked from its lower end, on its panel's axes", () => {
    const series = option().series as LineSeriesOption[];
    // Train: SPIN (3 series), Ours (3); Test: SPIN (3).
    expect(series).toHaveLength(9);
    const [mean, base, width] = series;
    expect(mean.name).toBe("SPIN");
    expect(mean.data).toEqual([
      [0, 0.5],
      [1, 0.55],
      [2, 0.6],
    ]);
    expect(base.data).toEqual([
      [0, 0.45],
      [1, 0.5],
      [2, 0.52],
    ]);
    expect((width.data as number[][]).map(([x, w]) => [x, Number(w.toFixed(10))])).toEqual([
      [0, 0.1],
      [1, 0.1],
      [2, 0.16],
    ]);
    expect(base.stack).toBe(width.stack);
    expect(base.stackStrategy).toBe("all");
    expect(width.areaStyle?.color).toBe(PALETTE[0]);
    expect(width.areaStyle?.opacity).toBe(BAND_OPACITY);
    expect(series[6].xAxisIndex).toBe(1);
    expect(series[6].yAxisIndex).toBe(1);
  });

  it("gives a method one color in every panel and one legend entry", () => {
    const o = option();
    const series = o.series as LineSeriesOption[];
    expect(series[3].name).toBe("Ours");
    expect(series[3].lineStyle?.color).toBe(PALETTE[1]);
    expect(series[6].lineStyle?.color).toBe(PALETTE[0]);
    expect((o.legend as { data: string[] }).data).toEqual(["SPIN", "Ours"]);
  });

  it("lightens the bands where more than two methods overlap", () => {
    const third = { ...spin, name: "DPO" };
    const series = rewardChartOption({ panels: [{ title: "t", lines: [spin, ours, third] }] })
      .series as LineSeriesOption[];
    expect(series[2].areaStyle?.opacity).toBe(CROWDED_BAND_OPACITY);
  });

  it("fits each panel's axes to its own points and bands", () => {
    const o = option();
    const x = o.xAxis as { min: number; max: number }[];
    const y = o.yAxis as { min: number; max: number; interval: number }[];
    expect([x[0].min, x[0].max]).toEqual([0, 3]);
    expect([x[1].min, x[1].max]).toEqual([0, 2]);
    // Train data [0.45, 0.7] -> pad 0.0125 -> [0.4375, 0.7125], step nice(0.055) = 0.1 -> [0.4, 0.8].
    expect(y[0]).toMatchObject({ min: 0.4, max: 0.8, interval: 0.1 });
    // Test data [0.45, 0.68] -> [0.4385, 0.6915], step nice(0.0506) = 0.1 -> [0.4, 0.7].
    expect(y[1]).toMatchObject({ min: 0.4, max: 0.7, interval: 0.1 });
  });

  it("labels iterations and refuses malformed lines", () => {
    expect([iterationLabel(0), iterationLabel(3)]).toEqual(["base", "iter 3"]);
    expect(() => rewardChartOption({ panels: [] })).toThrow(/no panels/);
    expect(() => rewardChartOption({ panels: [{ title: "t", lines: [{ ...spin, low: [0.1] }] }] })).toThrow(
      /"SPIN" has 3 x, 3 means, 1 lower and 3 upper ends/,
    );
    expect(() =>
      rewardChartOption({ panels: [{ title: "t", lines: [{ ...spin, mean: [0.5, Number.NaN, 0.6] }] }] }),
    ).toThrow(/point 1 is not finite/);
  });
});
