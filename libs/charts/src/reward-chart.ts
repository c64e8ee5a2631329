import type { EChartsOption, LineSeriesOption } from "echarts";
import { bandSeries } from "./band.js";
import { extent, niceRange } from "./nice-range.js";
import { BAND_OPACITY, CROWDED_BAND_OPACITY, seriesColor } from "./palette.js";
import { sideBySide } from "./panel-layout.js";

/** One model family's mean reward per iteration with its 95 % confidence interval. */
export interface BandedLine {
  /** Legend name, e.g. "SPIN". */
  name: string;
  /** Iteration of each point (0: the starting model). */
  x: readonly number[];
  /** Mean reward at each point. */
  mean: readonly number[];
  /** Lower end of each point's interval. */
  low: readonly number[];
  /** Upper end of each point's interval. */
  high: readonly number[];
}

/** One panel: its title and its lines (e.g. the train prompts' rewards). */
export interface BandedPanel {
  title: string;
  lines: readonly BandedLine[];
}

/** A reward-per-iteration chart: one or more panels side by side sharing the legend. */
export interface RewardChartSpec {
  panels: readonly BandedPanel[];
  /** Name of the y axis (default "reward"). */
  yName?: string;
  /** Name of the x axis (default "iteration"). */
  xName?: string;
  /** Tick label of an iteration (default the number; the dashboard writes "base" for 0). */
  xLabel?: (x: number) => string;
  /** What the bands are, said under the legend (default "shaded: 95% CI"; null: no note). */
  bandNote?: string | null;
}

function checkLine(l: BandedLine): void {
  const n = l.x.length;
  if (l.mean.length !== n || l.low.length !== n || l.high.length !== n)
    throw new Error(
      `rewardChartOption: line "${l.name}" has ${n} x, ${l.mean.length} means, ${l.low.length} lower and ${l.high.length} upper ends`,
    );
  for (let i = 0; i < n; i++) {
    if (![l.x[i], l.mean[i], l.low[i], l.high[i]].every(Number.isFinite))
      throw new Error(`rewardChartOption: line "${l.name}" point ${i} is not finite`);
  }
}

/** The dashboard's and the quickstart's x labels: "base" for the base model, "iter k" after. */
export function iterationLabel(x: number): string {
  return x === 0 ? "base" : `iter ${x}`;
}

/**
 * A line's three series: the mean (first, so the legend takes its color and symbol) and the band as an
 * invisible base with the width stacked on it. All three share the line's name, so its legend entry hides
 * and shows the band with the line. `stackStrategy: "all"` stacks the width on a negative base too.
 */
export function bandedLineSeries(
  line: BandedLine,
  color: string,
  axis: number,
  bandOpacity = BAND_OPACITY,
): LineSeriesOption[] {
  const band = bandSeries(line.low, line.high);
  const at = (ys: readonly (number | null)[]) => line.x.map((x, i) => [x, ys[i]]);
  const stack = `ci-${axis}-${line.name}`;
  const common = { name: line.name, type: "line" as const, xAxisIndex: axis, yAxisIndex: axis };
  const bandPart = { ...common, stack, stackStrategy: "all" as const, symbol: "none", silent: true, z: 1 };
  return [
    {
      ...common,
      data: at(line.mean),
      symbolSize: 6,
      itemStyle: { color },
      lineStyle: { width: 2, color },
      z: 3,
    },
    { ...bandPart, data: at(band.base), lineStyle: { opacity: 0 }, itemStyle: { color } },
    {
      ...bandPart,
      data: at(band.width),
      lineStyle: { opacity: 0 },
      itemStyle: { color },
      areaStyle: { color, opacity: bandOpacity },
    },
  ];
}

/**
 * The ECharts option of a reward-per-iteration chart: per panel a value x axis with a tick per iteration, a
 * y axis fitted to the bands, and per line its mean with a shaded 95 % band; one legend below. The same
 * option draws the dashboard's live chart and the reports' PNGs.
 */
export function rewardChartOption(spec: RewardChartSpec): EChartsOption {
  if (spec.panels.length === 0) throw new Error("rewardChartOption: no panels");
  const names: string[] = [];
  for (const p of spec.panels)
    for (const l of p.lines) {
      checkLine(l);
      if (!names.includes(l.name)) names.push(l.name);
    }
  const color = (name: string) => seriesColor(names.indexOf(name));
  const note = spec.bandNote === undefined ? "shaded: 95% CI" : spec.bandNote;
  const noteH = note ? 16 : 0;
  const legendRows = Math.ceil(names.length / 6);
  const { grid, title } = sideBySide(
    spec.panels.map((p) => p.title),
    { top: 54, bottom: 32 + 22 * legendRows + noteH },
  );
  const xAxis = spec.panels.map((p, i) => {
    const xs = extent(p.lines.flatMap((l) => l.x)) ?? [0, 1];
    return {
      type: "value" as const,
      gridIndex: i,
      min: xs[0],
      max: Math.max(xs[1], xs[0] + 1),
      minInterval: 1,
      name: spec.xName ?? "iteration",
      nameLocation: "middle" as const,
      nameGap: 26,
      splitLine: { show: false },
      axisLabel: { formatter: (v: number) => (Number.isInteger(v) ? (spec.xLabel?.(v) ?? String(v)) : "") },
    };
  });
  const yAxis = spec.panels.map((p, i) => {
    const ys = extent(p.lines.flatMap((l) => [...l.low, ...l.high, ...l.mean])) ?? [0, 1];
    const r = niceRange(ys[0], ys[1]);
    return { type: "value" as const, gridIndex: i, name: spec.yName ?? "reward", ...r };
  });
  const opacity = names.length > 2 ? CROWDED_BAND_OPACITY : BAND_OPACITY;
  const series = spec.panels.flatMap((p, i) =>
    p.lines.flatMap((l) => bandedLineSeries(l, color(l.name), i, opacity)),
  );
  const noteTitle = {
    text: note ?? "",
    left: "center",
    bottom: 2,
    textStyle: { fontSize: 11, color: "#666", fontWeight: "normal" as const },
  };
  return {
    animation: false,
    backgroundColor: "#ffffff",
    textStyle: { fontFamily: "sans-serif" },
    title: note ? [...title, noteTitle] : title,
    legend: { data: names, bottom: 2 + noteH, itemGap: 18 },
    tooltip: { trigger: "axis" },
    grid,
    xAxis,
    yAxis,
    series,
  };
}
