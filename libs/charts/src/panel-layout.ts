import type { GridComponentOption, TitleComponentOption } from "echarts";

/** Where the plot areas of a chart sit: space above for titles, below for the axis name and the legend. */
export interface PanelLayout {
  /** Pixels above the plot areas. */
  top: number;
  /** Pixels below them. */
  bottom: number;
}

/**
 * `n` plot areas side by side, each in its own 1/n of the width, with its axis labels kept inside that
 * slice (so the panels never overlap however long the tick labels are), and a title above each.
 */
export function sideBySide(
  titles: readonly string[],
  layout: PanelLayout,
): { grid: GridComponentOption[]; title: TitleComponentOption[] } {
  const n = titles.length;
  if (n === 0) throw new Error("sideBySide: no panels");
  const pct = (v: number) => `${Math.round(v * 1000) / 1000}%`;
  const slice = 100 / n;
  const grid = titles.map((_, i) => ({
    left: pct(i * slice + 1),
    right: pct((n - 1 - i) * slice + 2.5),
    top: layout.top,
    bottom: layout.bottom,
    outerBoundsMode: "same" as const,
    outerBoundsContain: "axisLabel" as const,
  }));
  const title = titles.map((text, i) => ({
    text,
    left: pct(i * slice + 1),
    top: 10,
    textStyle: { fontSize: 13, fontWeight: 600 as const },
  }));
  return { grid, title };
}
