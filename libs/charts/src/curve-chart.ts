import type { EChartsOption } from "echarts";
import { seriesColor } from "./palette.js";

/** One chart of a training curve: several metrics over the same optimiser steps. */
export interface CurvePanel {
  /** Chart title. */
  title: string;
  /** Optimiser steps (x). */
  steps: readonly number[];
  /** One line per metric; null where a point lacks the metric. */
  series: readonly { name: string; values: readonly (number | null)[] }[];
}

/**
 * The ECharts option of a training-curve panel: each metric against the step (gaps bridged where a point
 * lacks a metric), symbols only while the points are few, a legend when there is more than one metric.
 */
export function curveChartOption(panel: CurvePanel, options: { xName?: string } = {}): EChartsOption {
  for (const s of panel.series) {
    if (s.values.length !== panel.steps.length)
      throw new Error(
        `curveChartOption: "${s.name}" has ${s.values.length} values for ${panel.steps.length} steps`,
      );
  }
  const legend = panel.series.length > 1;
  return {
    animation: false,
    backgroundColor: "#ffffff",
    textStyle: { fontFamily: "sans-serif" },
    title: { text: panel.title, textStyle: { fontSize: 12 } },
    tooltip: { trigger: "axis" },
    legend: legend ? { bottom: 0, textStyle: { fontSize: 11 } } : undefined,
    grid: { left: 64, right: 16, top: 32, bottom: legend ? 52 : 34 },
    xAxis: {
      type: "value",
      name: options.xName ?? "step",
      nameLocation: "middle",
      nameGap: 24,
      min: "dataMin",
      max: "dataMax",
    },
    yAxis: { type: "value", scale: true },
    series: panel.series.map((s, i) => ({
      name: s.name,
      type: "line",
      showSymbol: panel.steps.length < 40,
      connectNulls: true,
      itemStyle: { color: seriesColor(i) },
      lineStyle: { color: seriesColor(i) },
      data: panel.steps.map((step, k) => [step, s.values[k]]),
    })),
  };
}
