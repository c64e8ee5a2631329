import { create } from "@bufbuild/protobuf";
import { RunSchema } from "@idpo/proto";
import { describe, expect, it } from "vitest";
import { rewardSeries } from "./reward-series.js";

const est = (mean: number, half: number) => ({ mean, ci95Low: mean - half, ci95High: mean + half, n: 8 });

describe("rewardSeries", () => {
  it("has the base and every evaluated iteration, skipping one not evaluated yet", () => {
    const run = create(RunSchema, {
      baseEvaluation: { reward: est(0.5, 0.05) },
      iterations: [{ index: 1, evaluation: { reward: est(0.55, 0.04), winRateVsBase: 0.625 } }, { index: 2 }],
    });
    const s = rewardSeries(run);
    expect(s.labels).toEqual(["base", "iter 1"]);
    expect(s.iterations).toEqual([0, 1]);
    expect(s.mean).toEqual([0.5, 0.55]);
    expect(s.low[0]).toBeCloseTo(0.45, 12);
    expect(s.high[1]).toBeCloseTo(0.59, 12);
    expect(s.winRate).toEqual([null, 0.625]);
  });

  it("gains a point when the next evaluation lands", () => {
    const run = create(RunSchema, { iterations: [{ index: 1 }] });
    expect(rewardSeries(run).labels).toEqual([]);
    run.baseEvaluation = create(RunSchema, { baseEvaluation: { reward: est(0.4, 0.1) } }).baseEvaluation;
    expect(rewardSeries(run).labels).toEqual(["base"]);
  });
});
