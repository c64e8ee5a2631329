import { describe, expect, it } from "vitest";
import type { ValidationEval } from "./evaluate.js";
import {
  type ChainStep,
  chooseVariant,
  combineHelpful,
  describeChange,
  extendWhileRising,
  type VariantSpec,
} from "./tuning.js";

const faithful: VariantSpec = {
  key: "faithful",
  label: "faithful",
  change: "none",
  pairs: 256,
  steps: 40,
  learningRate: 2e-5,
  beta: 1000,
  reference: "base",
  sftOnWinners: false,
  earlyStop: false,
  improveStrength: 1,
  sftWeight: 0,
  dpoPositiveLambda: 0,
  offlinePairs: 0,
};
const words = { sftSteps: 60, sftLearningRate: 1e-4, earlyStopCheckpoints: 4 };

describe("combineHelpful", () => {
  it("joins every change that beat the faithful method, each setting from the best variant that changed it", () => {
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
        v({ key: "sdedit-rpo", improveStrength: 0.6, sftWeight: 1 }, 0.9),
      ],
      0.7,
      words,
    );
    expect(c).toMatchObject({
      key: "combined",
      pairs: 1024,
      beta: 250,
      learningRate: 2e-5,
      earlyStop: true,
      sftOnWinners: false,
      improveStrength: 0.6,
      sftWeight: 1,
    });
    expect(c?.change).toBe(
      "SDEdit winners (strength 0.6) + 1024 pairs + β 250 + early stopping (4 checkpoints) + RPO likelihood term (α 1)",
    );
  });

  it("needs at least two helpful changes", () => {
    expect(
      combineHelpful(
        faithful,
        [{ spec: { ...faithful, key: "sft", sftOnWinners: true }, finalReward: 0.9 }],
        0.7,
        words,
      ),
    ).toBeUndefined();
    expect(combineHelpful(faithful, [], 0.7, words)).toBeUndefined();
  });
});

describe("describeChange", () => {
  it("names each changed setting in a fixed order, and 'none' for the faithful settings", () => {
    expect(describeChange(faithful, faithful, words)).toBe("none");
    expect(
      describeChange(
        faithful,
        { ...faithful, sftOnWinners: true, reference: "previous", dpoPositiveLambda: 5, steps: 80 },
        words,
      ),
    ).toBe(
      "80 steps per iteration + refreshed reference + SFT on improved winners (60 steps, lr 0.0001) + DPO-Positive (λ 5)",
    );
    expect(describeChange(faithful, { ...faithful, offlinePairs: 384, learningRate: 1e-4 }, words)).toBe(
      "lr 0.0001 + 384 offline pairs mixed in",
    );
  });
});

describe("chooseVariant", () => {
  const v = (validation: number[], lastVendi: number) => ({
    validation,
    validationVendi: validation.map((_, i) => (i === validation.length - 1 ? lastVendi : 2)),
  });

  it("prefers the highest final reward among variants that rise every iteration and keep their diversity", () => {
    const variants = [
      v([0.7, 0.7, 0.64, 0.67], 2.0), // faithful: falls
      v([0.7, 0.73, 0.68, 0.74], 1.6), // highest final, but dips and loses diversity
      v([0.7, 0.71, 0.72, 0.73], 1.9), // rises, Vendi 0.95× → qualifies
      v([0.7, 0.72, 0.725, 0.735], 1.7), // rises, but Vendi 0.85× of 2.0
      v([0.7, 0.705, 0.71, 0.72], 2.1), // rises, lower final
    ];
    const c = chooseVariant(variants, 2.0, 0.9);
    expect(c.index).toBe(2);
    expect(c.rule).toContain("rose at every iteration");
    expect(c.rule).toContain("after 3 iterations");
  });

  it("falls back to the highest final reward, and says so, when no variant qualifies", () => {
    const variants = [v([0.7, 0.69, 0.68], 2.0), v([0.7, 0.75, 0.72], 2.0), v([0.7, 0.71, 0.73], 1.0)];
    const c = chooseVariant(variants, 2.0, 0.9);
    expect(c.index).toBe(2);
    expect(c.rule).toContain("no variant rose");
  });

  it("keeps the earlier variant on a tie and rejects an empty list", () => {
    expect(chooseVariant([v([0.7, 0.72], 2), v([0.7, 0.72], 2)], 2, 0.9).index).toBe(0);
    expect(() => chooseVariant([], 2, 0.9)).toThrow(/no variants/);
  });
});

describe("extendWhileRising", () => {
  const val = (checkpointId: string, reward: number) => ({
    checkpointId,
    reward,
    ci: 0.01,
    vendi: 2,
    rewards: [],
  });
  /** Steps whose validation rewards are `rewards`, in order; records which iterate each started from. */
  function steps(rewards: number[]) {
    const from: string[] = [];
    const iterate = async (k: number, current: ValidationEval): Promise<ChainStep> => {
      from.push(`${k}:${current.checkpointId}`);
      return { checkpointId: `it-${k}`, val: val(`it-${k}`, rewards[k - 4]), metrics: {} };
    };
    return { from, iterate };
  }

  it("keeps each iteration that beats the one before and drops the first that does not", async () => {
    const s = steps([0.75, 0.76, 0.755]);
    const ext = await extendWhileRising(val("it-3", 0.747), 4, 6, s.iterate);
    expect(ext.kept.map((k) => k.checkpointId)).toEqual(["it-4", "it-5"]);
    expect(ext.dropped?.map((d) => d.iteration)).toEqual([6]);
    expect(ext.dropped?.[0].step.val.reward).toBe(0.755);
    expect(s.from).toEqual(["4:it-3", "5:it-4", "6:it-5"]);
  });

  it("stops at the limit while still rising, and a tie does not count as a rise", async () => {
    const rising = await extendWhileRising(val("it-3", 0.7), 4, 5, steps([0.71, 0.72, 0.73]).iterate);
    expect(rising.kept).toHaveLength(2);
    expect(rising.dropped).toBeUndefined();
    const tie = await extendWhileRising(val("it-3", 0.7), 4, 6, steps([0.7]).iterate);
    expect(tie.kept).toHaveLength(0);
    expect(tie.dropped?.map((d) => d.iteration)).toEqual([4]);
  });

  it("with patience 2 goes on past one flat iteration from the last iterate and keeps through the best", async () => {
    // The exploration's trajectory: 0.748, 0.7478 (flat), 0.7534, 0.7532, 0.7551, then two misses.
    const s = steps([0.748, 0.7478, 0.7534, 0.7532, 0.7551, 0.755, 0.754, 0.9]);
    const ext = await extendWhileRising(val("it-3", 0.745), 4, 11, s.iterate, 2);
    expect(ext.kept.map((k) => k.checkpointId)).toEqual(["it-4", "it-5", "it-6", "it-7", "it-8"]);
    expect(ext.dropped?.map((d) => d.iteration)).toEqual([9, 10]);
    expect(s.from).toEqual(["4:it-3", "5:it-4", "6:it-5", "7:it-6", "8:it-7", "9:it-8", "10:it-9"]);
    // Patience 1 on the same trajectory stops at the flat iteration.
    const one = await extendWhileRising(val("it-3", 0.745), 4, 11, steps([0.748, 0.7478, 0.7534]).iterate);
    expect(one.kept.map((k) => k.checkpointId)).toEqual(["it-4"]);
    expect(one.dropped?.map((d) => d.iteration)).toEqual([5]);
    await expect(extendWhileRising(val("it-3", 0.7), 4, 5, s.iterate, 0)).rejects.toThrow(/patience 0/);
  });

  it("runs nothing when the limit is below the first iteration", async () => {
    const s = steps([0.9]);
    const ext = await extendWhileRising(val("it-3", 0.7), 4, 3, s.iterate);
    expect(ext).toEqual({ kept: [] });
    expect(s.from).toEqual([]);
  });
});
