import { solidImage } from "@idpo/data";
import type { LineSeriesOption } from "echarts";
import { describe, expect, it } from "vitest";
import { labelledRows, learningCurveChart, rewardChart } from "./figures.js";
import type { ModelEval, PaperResults, SetEval } from "./results.js";

const set = (reward: number, ci: number): SetEval => ({
  n: 8,
  reward,
  ci,
  vendi: 1,
  components: {},
  rewards: [],
});
const model = (key: string, train: number, test: number): ModelEval => ({
  key,
  label: key,
  checkpointId: key,
  train: set(train, 0.02),
  test: set(test, 0.04),
});

const results: Pick<PaperResults, "models" | "series"> = {
  models: {
    base: model("base", 0.5, 0.45),
    "spin/iter-1": model("spin/iter-1", 0.55, 0.5),
    "ours/iter-2": model("ours/iter-2", 0.6, 0.52),
  },
  series: [
    { label: "SPIN", keys: ["base", "spin/iter-1"], firstIteration: 0 },
    { label: "Ours from SPIN", keys: ["spin/iter-1", "ours/iter-2"], firstIteration: 1 },
  ],
};

describe("rewardChart", () => {
  it("draws each method's train and test rewards per iteration with bands of their 95 % half-widths", () => {
    const series = rewardChart(results).series as LineSeriesOption[];
    // Per panel and method: mean, band base, band width.
    expect(series).toHaveLength(12);
    const [trainSpin, trainSpinBase, trainSpinWidth] = series;
    expect(trainSpin.name).toBe("SPIN");
    expect(trainSpin.data).toEqual([
      [0, 0.5],
      [1, 0.55],
    ]);
    expect((trainSpinBase.data as number[][]).map(([x, y]) => [x, Number(y.toFixed(10))])).toEqual([
      [0, 0.48],
      [1, 0.53],
    ]);
    expect((trainSpinWidth.data as number[][]).map(([, w]) => Number(w.toFixed(10)))).toEqual([0.04, 0.04]);
    const testOurs = series[9];
    expect(testOurs.name).toBe("Ours from SPIN");
    expect(testOurs.xAxisIndex).toBe(1);
    // Starts at SPIN's iteration 1.
    expect(testOurs.data).toEqual([
      [1, 0.5],
      [2, 0.52],
    ]);
  });

  it("says which model has no evaluation", () => {
    const broken = { ...results, series: [{ label: "X", keys: ["missing"], firstIteration: 0 }] };
    expect(() => rewardChart(broken)).toThrow(/no evaluation of missing/);
  });
});

describe("labelledRows", () => {
  it("sets the labels left of the pixel grid and rasterises both", () => {
    const img = solidImage(4, 4, [0.2, 0.4, 0.8]);
    const { svg, png } = labelledRows(
      [
        { label: "Base & <SFT>", images: [img, img] },
        { label: "SPIN", images: [img] },
      ],
      2,
    );
    // Grid: cells 8x8, padding 2 -> 2 + 2 * 10 = 22 wide and high; labels 16 + ceil(12 * 15 * 0.62) = 128.
    expect([png.readUInt32BE(16), png.readUInt32BE(20)]).toEqual([128 + 22, 22]);
    expect(svg).toContain("Base &#38; &#60;SFT&#62;");
    expect(svg).toContain('href="data:image/png;base64,');
  });
});

describe("learningCurveChart", () => {
  const curve = [
    { step: 200, reward: 0.6, ci: 0.02 },
    { step: 1000, reward: 0.7, ci: 0.01 },
  ];

  it("draws the curve against the training step with its band, and the reference as a flat line", () => {
    const series = learningCurveChart(curve, { label: "shipped", reward: 0.71 }).series as LineSeriesOption[];
    expect(series).toHaveLength(6);
    expect(series[0].name).toBe("base job's checkpoints");
    expect(series[0].data).toEqual([
      [200, 0.6],
      [1000, 0.7],
    ]);
    expect((series[1].data as number[][]).map(([x, y]) => [x, Number(y.toFixed(10))])).toEqual([
      [200, 0.58],
      [1000, 0.69],
    ]);
    expect(series[3].name).toBe("shipped");
    expect(series[3].data).toEqual([
      [200, 0.71],
      [1000, 0.71],
    ]);
  });

  it("rejects an empty curve", () => {
    expect(() => learningCurveChart([])).toThrow(/no points/);
  });
});
