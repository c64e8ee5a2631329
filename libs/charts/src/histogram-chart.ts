import type { EChartsOption } from "echarts";
import { seriesColor } from "./palette.js";

/** Histograms over the same bins, one per series. */
export interface HistogramChartSpec {
  /** Chart title. */
  title?: string;
  /** bins + 1 increasing bin edges. */
  edges: readonly number[];
  /** Count per bin of each series; `n` is the series' size, shown in the legend. */
  series: readonly { name: string; counts: readonly number[]; n: number }[];
  /** Name of the value axis (default "value"). */
  xName?: string;
}

/**
 * The ECharts option of histograms side by side per bin: a value axis over the bins' range, a count axis from zero, a legend with each series' size.
 */
export function histogramChartOption(spec: HistogramChartSpec): EChartsOption {
  const bins = spec.edges.length - 1;
  if (bins < 1) throw new Error("histogramChartOption: need at least two edges");
  for (let k = 0; k < bins; k++) {
    if (!(spec.edges[k + 1] > spec.edges[k]))
      throw new Error(`histogramChartOption: edges not increasing at ${k}`);
  }
  if (spec.series.length === 0) throw new Error("histogramChartOption: no series");
  for (const s of spec.series) {
    if (s.counts.length !== bins)
      throw new Error(`histogramChartOption: "${s.name}" has ${s.counts.length} counts for ${bins} bins`);
  }
  const label = (s: { name: string; n: number }) => `${s.name} (n=${s.n})`;
  const centers = spec.edges.slice(0, bins).map((e, k) => (e + spec.edges[k + 1]) / 2);
  return {
    animation: false,
    backgroundColor: "#ffffff",
    textStyle: { fontFamily: "sans-serif" },
    title: spec.title ? { text: spec.title, left: 8, top: 8, textStyle: { fontSize: 14 } } : undefined,
    legend: { top: 10, right: 12 },
    tooltip: { trigger: "axis" },
    grid: { left: 56, right: 24, top: 60, bottom: 48 },
    // A value axis over the bins' full range: the bars sit on their bins' centres and fill the bins, and the
    // ticks are round values rather than bin labels.
    xAxis: {
      type: "value",
      min: spec.edges[0],
      max: spec.edges[bins],
      name: spec.xName ?? "value",
      nameLocation: "middle",
      nameGap: 28,
      splitLine: { show: false },
    },
    yAxis: { type: "value", min: 0, minInterval: 1, name: "count" },
    series: spec.series.map((s, i) => ({
      name: label(s),
      type: "bar",
      barGap: "0%",
      barCategoryGap: "8%",
      itemStyle: { color: seriesColor(i) },
      data: s.counts.map((c, k) => [centers[k], c]),
    })),
  };
}
