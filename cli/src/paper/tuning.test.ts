import { describe, expect, it } from "vitest";
import { combineHelpful, type VariantSpec } from "./tuning.js";

const faithful: VariantSpec = {
  key: "faithful",
  label: "faithful",
  change: "none",
  pairs: 256,
  learningRate: 2e-5,
  beta: 1000,
  reference: "base",
  sftOnWinners: false,
  earlyStop: false,
  improveStrength: 1,
};

describe("combineHelpful", () => {
  it("joins every change that beat the faithful method, taking the best β", () => {
    const v = (spec: Partial<VariantSpec>, finalReward: number) => ({
      spec: { ...faithful, ...spec },
      finalReward,
    });
    const c = combineHelpful(
      faithful,
      [
        v({ key: "pairs-1024", pairs: 1024 }, 0.8),
        v({ key: "beta-250", beta: 250 }, 0.75),
        v({ key: "beta-4000", beta: 4000 }, 0.72),
        v({ key: "low-lr", learningRate: 5e-6 }, 0.6),
        v({ key: "early-stop", earlyStop: true }, 0.71),
        v({ key: "sdedit", improveStrength: 0.6 }, 0.9),
      ],
      0.7,
    );
    expect(c).toMatchObject({
      key: "combined",
      pairs: 1024,
      beta: 250,
      learningRate: 2e-5,
      earlyStop: true,
      sftOnWinners: false,
      improveStrength: 0.6,
    });
    expect(c?.change).toBe("SDEdit winners (strength 0.6) + 1024 pairs + β 250 + early stopping");
  });

  it("needs at least two helpful changes", () => {
    expect(
      combineHelpful(
        faithful,
        [{ spec: { ...faithful, key: "sft", sftOnWinners: true }, finalReward: 0.9 }],
        0.7,
      ),
    ).toBeUndefined();
    expect(combineHelpful(faithful, [], 0.7)).toBeUndefined();
  });
});
