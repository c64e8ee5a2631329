import { generateShapesPairs } from "@idpo/data";
import { oracleRewardValue } from "@idpo/metrics";
import { describe, expect, it } from "vitest";
import { dataReference, summarize } from "./data-reference.js";

describe("summarize", () => {
  it("gives the mean and numpy's linearly interpolated quartiles", () => {
    // numpy.percentile([4, 1, 3, 2], [25, 50, 75]) = [1.75, 2.5, 3.25]
    expect(summarize([4, 1, 3, 2])).toEqual({ n: 4, mean: 2.5, p25: 1.75, p50: 2.5, p75: 3.25 });
    expect(summarize([0.7])).toEqual({ n: 1, mean: 0.7, p25: 0.7, p50: 0.7, p75: 0.7 });
  });
});

describe("dataReference", () => {
  it("scores the same pairs the trainer generates for the shapes:// URI, and the ideal renders", () => {
    const ref = dataReference(
      { pairs: 40, size: 16, seed: 11 },
      {
        train: ["a small red circle on a black background"],
        test: ["a large green square on a navy background", "a medium white triangle on a black background"],
      },
    );
    const pairs = [
      ...generateShapesPairs({ count: 40, size: 16, seed: 11, reward: oracleRewardValue, split: "train" }),
    ];
    const winnerMean = pairs.reduce((a, p) => a + p.winnerReward, 0) / pairs.length;
    expect(ref.winners.n).toBe(40);
    expect(ref.winners.mean).toBeCloseTo(winnerMean, 12);
    expect(ref.losers.n).toBe(40);
    expect(ref.idealTrain.n).toBe(1);
    expect(ref.idealTest.n).toBe(2);
    // Ideal renders sit at the top of the scale; the Bradley-Terry winners above the losers on average.
    expect(ref.idealTest.mean).toBeGreaterThan(0.85);
    expect(ref.winners.mean).toBeGreaterThan(ref.losers.mean);
  });
});
