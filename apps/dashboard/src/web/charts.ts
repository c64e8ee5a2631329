import { LineChart } from "echarts/charts";
import { GridComponent, LegendComponent, TitleComponent, TooltipComponent } from "echarts/components";
import * as echarts from "echarts/core";
import { SVGRenderer } from "echarts/renderers";
import type { CurvePanel } from "./shaping/job-curves.js";
import { bandSeries, type RewardSeries } from "./shaping/reward-series.js";

echarts.use([LineChart, GridComponent, LegendComponent, TitleComponent, TooltipComponent, SVGRenderer]);

const PALETTE = ["#2f6fde", "#d9480f", "#2b8a3e", "#862e9c", "#e67700"];

function chartOn(el: HTMLElement): echarts.EChartsType {
  return echarts.getInstanceByDom(el) ?? echarts.init(el, undefined, { renderer: "svg" });
}

/** Keeps every chart sized to its box. */
window.addEventListener("resize", () => {
  for (const el of document.querySelectorAll<HTMLElement>("[data-chart]"))
    echarts.getInstanceByDom(el)?.resize();
});

/**
 * Mean oracle reward per evaluated model with its 95 % confidence band. The element's `data-points` holds
 * the number of points drawn (what a watcher, or a browser test, sees grow).
 */
export function drawRewardChart(el: HTMLElement, s: RewardSeries): void {
  el.dataset.chart = "reward";
  el.dataset.points = String(s.mean.length);
  const band = bandSeries(s.low, s.high);
  chartOn(el).setOption(
    {
      color: PALETTE,
      animation: false,
      title: { text: "oracle reward on the evaluation prompts (95% CI)", textStyle: { fontSize: 13 } },
      tooltip: {
        trigger: "axis",
        formatter: (items: { dataIndex: number }[]) => {
          const i = items[0]?.dataIndex ?? 0;
          const wr = s.winRate[i];
          return `${s.labels[i]}<br/>reward ${s.mean[i].toFixed(4)} [${s.low[i].toFixed(4)}, ${s.high[i].toFixed(4)}]${wr === null ? "" : `<br/>win-rate vs base ${(wr * 100).toFixed(1)}%`}`;
        },
      },
      legend: { data: ["mean reward", "95% CI"], bottom: 0 },
      grid: { left: 56, right: 16, top: 44, bottom: 52 },
      xAxis: { type: "category", data: s.labels, boundaryGap: false },
      yAxis: { type: "value", scale: true, name: "reward" },
      series: [
        {
          name: "ci-low",
          type: "line",
          data: band.base,
          stack: "ci",
          symbol: "none",
          lineStyle: { opacity: 0 },
          silent: true,
        },
        {
          name: "95% CI",
          type: "line",
          data: band.width,
          stack: "ci",
          symbol: "none",
          lineStyle: { opacity: 0 },
          areaStyle: { color: PALETTE[0], opacity: 0.18 },
          silent: true,
        },
        { name: "mean reward", type: "line", data: s.mean, symbolSize: 7, lineStyle: { width: 2 } },
      ],
    },
    { notMerge: true },
  );
}

/** One panel of a training job's curves: its metrics against the optimiser step. */
export function drawCurveChart(el: HTMLElement, panel: CurvePanel): void {
  el.dataset.chart = "curve";
  el.dataset.points = String(panel.steps.length);
  chartOn(el).setOption(
    {
      color: PALETTE,
      animation: false,
      title: { text: panel.title, textStyle: { fontSize: 12 } },
      tooltip: { trigger: "axis" },
      legend: panel.series.length > 1 ? { bottom: 0, textStyle: { fontSize: 11 } } : undefined,
      grid: { left: 64, right: 16, top: 32, bottom: panel.series.length > 1 ? 48 : 28 },
      xAxis: { type: "value", name: "step", nameGap: 4, min: "dataMin", max: "dataMax" },
      yAxis: { type: "value", scale: true },
      series: panel.series.map((s) => ({
        name: s.name,
        type: "line",
        showSymbol: panel.steps.length < 40,
        connectNulls: true,
        data: panel.steps.map((step, i) => [step, s.values[i]]),
      })),
    },
    { notMerge: true },
  );
}

/** Releases the charts inside `root` (before a page is replaced). */
export function disposeCharts(root: Element): void {
  for (const el of root.querySelectorAll<HTMLElement>("[data-chart]"))
    echarts.getInstanceByDom(el)?.dispose();
}
