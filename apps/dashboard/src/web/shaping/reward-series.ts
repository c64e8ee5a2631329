import type { Run } from "@idpo/proto";

/** The reward of each evaluated model of a run, ready for a line chart with a confidence band. */
export interface RewardSeries {
  /** X labels: "base", "iter 1", ... (evaluated models only, in order). */
  labels: string[];
  /** Iteration of each point (0 = base). */
  iterations: number[];
  /** Mean oracle reward. */
  mean: number[];
  /** Lower end of the 95 % CI. */
  low: number[];
  /** Upper end of the 95 % CI. */
  high: number[];
  /** Win-rate against the base model's same-seed samples (null for the base itself). */
  winRate: (number | null)[];
}

/**
 * The run's evaluations as chart series: the base model, then every evaluated iteration (an iteration still
 * training or generating has no point yet, so the chart gains one when its evaluation lands).
 */
export function rewardSeries(run: Run): RewardSeries {
  const out: RewardSeries = { labels: [], iterations: [], mean: [], low: [], high: [], winRate: [] };
  const push = (label: string, k: number, e: NonNullable<Run["baseEvaluation"]>) => {
    if (!e.reward) return;
    out.labels.push(label);
    out.iterations.push(k);
    out.mean.push(e.reward.mean);
    out.low.push(e.reward.ci95Low);
    out.high.push(e.reward.ci95High);
    out.winRate.push(e.winRateVsBase ?? null);
  };
  if (run.baseEvaluation) push("base", 0, run.baseEvaluation);
  for (const it of run.iterations) if (it.evaluation) push(`iter ${it.index}`, it.index, it.evaluation);
  return out;
}
