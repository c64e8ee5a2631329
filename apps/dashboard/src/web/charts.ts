import { type CurvePanel, curveChartOption, iterationLabel, rewardChartOption } from "@idpo/charts";
import { LineChart } from "echarts/charts";
import { GridComponent, LegendComponent, TitleComponent, TooltipComponent } from "echarts/components";
import * as echarts from "echarts/core";
import { SVGRenderer } from "echarts/renderers";
import type { RewardSeries } from "./shaping/reward-series.js";

echarts.use([LineChart, GridComponent, LegendComponent, TitleComponent, TooltipComponent, SVGRenderer]);

function chartOn(el: HTMLElement): echarts.EChartsType {
  return echarts.getInstanceByDom(el) ?? echarts.init(el, undefined, { renderer: "svg" });
}

/** Keeps every chart sized to its box. */
window.addEventListener("resize", () => {
  for (const el of document.querySelectorAll<HTMLElement>("[data-chart]"))
    echarts.getInstanceByDom(el)?.resize();
});

/**
 * Mean oracle reward per evaluated model with its 95 % confidence band, drawn from the option the reports'
 * figures are rendered from too. The element's `data-points` holds the number of points drawn (what a
 * watcher, or a browser test, sees grow).
 */
export function drawRewardChart(el: HTMLElement, s: RewardSeries): void {
  el.dataset.chart = "reward";
  el.dataset.points = String(s.mean.length);
  const option = rewardChartOption({
    panels: [
      {
        title: "oracle reward on the evaluation prompts (95% CI)",
        lines: [{ name: "mean reward", x: s.iterations, mean: s.mean, low: s.low, high: s.high }],
      },
    ],
    xLabel: iterationLabel,
    bandNote: null,
  });
  option.tooltip = {
    trigger: "axis",
    formatter: (items: unknown) => {
      const first = (Array.isArray(items) ? items[0] : items) as { dataIndex?: number } | undefined;
      const i = first?.dataIndex ?? 0;
      const wr = s.winRate[i];
      return `${s.labels[i]}<br/>reward ${s.mean[i].toFixed(4)} [${s.low[i].toFixed(4)}, ${s.high[i].toFixed(4)}]${wr === null ? "" : `<br/>win-rate vs base ${(wr * 100).toFixed(1)}%`}`;
    },
  };
  chartOn(el).setOption(option, { notMerge: true });
}

/** One panel of a training job's curves: its metrics against the optimiser step. */
export function drawCurveChart(el: HTMLElement, panel: CurvePanel): void {
  el.dataset.chart = "curve";
  el.dataset.points = String(panel.steps.length);
  chartOn(el).setOption(curveChartOption(panel), { notMerge: true });
}

/** Releases the charts inside `root` (before a page is replaced). */
export function disposeCharts(root: Element): void {
  for (const el of root.querySelectorAll<HTMLElement>("[data-chart]"))
    echarts.getInstanceByDom(el)?.dispose();
}
