import { describe, expect, it } from "vitest";
import { learningRateAt } from "./lr-schedule.js";

describe("learningRateAt", () => {
  it("decays linearly from the peak to minLr at totalSteps, after the warmup", () => {
    // warmup 2 of 10 steps, peak 1, floor 0.2: after warmup lr = 0.2 + 0.8·(1 − (k − 2)/8).
    const lin = { lr: 1, warmupSteps: 2, kind: "linear" as const, totalSteps: 10, minLr: 0.2 };
    const expected = [0.5, 1, 1, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.2];
    for (const [k, lr] of expected.entries()) expect(learningRateAt(lin, k), `step ${k}`).toBeCloseTo(lr, 12);
    // Without a warmup or a floor: lr·(1 − k/total).
    const plain = { lr: 4e-4, kind: "linear" as const, totalSteps: 4 };
    for (const [k, lr] of [4e-4, 3e-4, 2e-4, 1e-4, 0].entries())
      expect(learningRateAt(plain, k)).toBeCloseTo(lr, 15);
  });

  it("rejects a schedule that cannot run at any step, even one still in its warmup", () => {
    expect(() => learningRateAt({ lr: 1, kind: "linear", totalSteps: 3, warmupSteps: 3 }, 0)).toThrow(
      /linear schedule needs totalSteps > warmupSteps/,
    );
    expect(() => learningRateAt({ lr: 1, kind: "step" as never, totalSteps: 3 }, 0)).toThrow(
      /known: constant, cosine, linear/,
    );
  });
});
