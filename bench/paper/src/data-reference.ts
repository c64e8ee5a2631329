import { generateShapesPairs, renderIdeal } from "@idpo/data";
import { oracleRewardValue } from "@idpo/metrics";

/** Mean and quartiles of a set of rewards. */
export interface RewardSummary {
  /** Number of images. */
  n: number;
  mean: number;
  p25: number;
  p50: number;
  p75: number;
}

/**
 * Where the models' rewards sit against the data: the offline dataset's winners and losers (what the
 * base model was trained on) and the ideal renders of the evaluated prompts (the ceiling).
 */
export interface DataReference {
  /** Rewards of the offline dataset's winners. */
  winners: RewardSummary;
  /** Rewards of its losers. */
  losers: RewardSummary;
  /** Ideal renders of the evaluated train prompts. */
  idealTrain: RewardSummary;
  /** Ideal renders of the evaluated test prompts. */
  idealTest: RewardSummary;
}

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/** Mean and quartiles (linear interpolation between order statistics, numpy's default). */
export function summarize(values: readonly number[]): RewardSummary {
  const sorted = [...values].sort((a, b) => a - b);
  const mean = sorted.reduce((a, v) => a + v, 0) / Math.max(1, sorted.length);
  return {
    n: sorted.length,
    mean,
    p25: quantile(sorted, 0.25),
    p50: quantile(sorted, 0.5),
    p75: quantile(sorted, 0.75),
  };
}

/**
 * Recomputes the offline dataset exactly as the Trainer builds it for `shapes://?pairs=N&size=S&seed=K`
 * (same generator, same seed, train prompts) and scores the ideal renders of the evaluated prompts.
 */
export function dataReference(
  dataset: { pairs: number; size: number; seed: number },
  evalPrompts: { train: readonly string[]; test: readonly string[] },
): DataReference {
  const winners: number[] = [];
  const losers: number[] = [];
  for (const p of generateShapesPairs({
    count: dataset.pairs,
    size: dataset.size,
    seed: dataset.seed,
    reward: oracleRewardValue,
    split: "train",
  })) {
    winners.push(p.winnerReward);
    losers.push(p.loserReward);
  }
  const ideal = (prompts: readonly string[]) =>
    summarize(prompts.map((p) => oracleRewardValue(renderIdeal(p, dataset.size), p)));
  return {
    winners: summarize(winners),
    losers: summarize(losers),
    idealTrain: ideal(evalPrompts.train),
    idealTest: ideal(evalPrompts.test),
  };
}
