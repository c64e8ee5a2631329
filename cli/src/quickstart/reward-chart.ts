import { iterationLabel, rewardChartOption } from "@idpo/charts";
import { evaluationRows } from "@idpo/local-mesh";
import type { Run } from "@idpo/proto";
import type { EChartsOption } from "echarts";

/** Size of the quickstart's rewards.png and rewards.svg in pixels. */
export const QUICKSTART_REWARD_SIZE = { width: 640, height: 360 } as const;

/**
 * The quickstart report's reward chart: the mean oracle reward of the base model and of each evaluated
 * iteration with its 95 % band, as the dashboard draws the run (undefined while nothing is evaluated).
 */
export function quickstartRewardChart(run: Run): EChartsOption | undefined {
  const x: number[] = [];
  const mean: number[] = [];
  const low: number[] = [];
  const high: number[] = [];
  for (const { label, evaluation: e } of evaluationRows(run)) {
    if (!e.reward) continue;
    x.push(label === "base" ? 0 : Number(label.replace("iteration ", "")));
    mean.push(e.reward.mean);
    low.push(e.reward.ci95Low);
    high.push(e.reward.ci95High);
  }
  if (x.length === 0) return undefined;
  const prompts = run.config?.evalPrompts.length ?? 0;
  return rewardChartOption({
    panels: [
      {
        title: `Oracle reward on ${prompts} held-out prompts`,
        lines: [{ name: "mean reward", x, mean, low, high }],
      },
    ],
    xLabel: iterationLabel,
  });
}
