/** Bin edges and counts of a histogram. */
export interface Histogram {
  /** bins + 1 increasing edges; bin k is [edges[k], edges[k+1]) (the last bin includes its right edge). */
  edges: number[];
  /** Count per bin. */
  counts: number[];
  /** Values below the first edge. */
  under: number;
  /** Values above the last edge. */
  over: number;
  /** Non-finite values skipped. */
  skipped: number;
}

/** Counts values into `bins` equal bins over [min, max]. */
export function histogram(values: ArrayLike<number>, bins: number, min: number, max: number): Histogram {
  if (!Number.isInteger(bins) || bins <= 0)
    throw new Error(`histogram: bins must be a positive integer, got ${bins}`);
  if (!(max > min)) throw new Error(`histogram: need max > min, got [${min}, ${max}]`);
  const counts = new Array<number>(bins).fill(0);
  const edges: number[] = [];
  for (let k = 0; k <= bins; k++) edges.push(min + ((max - min) * k) / bins);
  let under = 0;
  let over = 0;
  let skipped = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isFinite(v)) skipped++;
    else if (v < min) under++;
    else if (v > max) over++;
    else counts[Math.min(bins - 1, Math.floor(((v - min) / (max - min)) * bins))]++;
  }
  return { edges, counts, under, over, skipped };
}

/** One named series of values to histogram. */
export interface HistogramSeries {
  /** Legend label. */
  label: string;
  /** Values. */
  values: ArrayLike<number>;
}

/** The bins of a histogram. */
export interface HistogramBinning {
  /** Number of bins (default 20). */
  bins?: number;
  /** Range start (default 0). */
  min?: number;
  /** Range end (default 1). */
  max?: number;
}

/**
 * A text histogram: one line per bin with a bar of '#' per series (scaled to `barWidth`
 * characters for the largest count across series) and the count.
 */
export function textHistogram(
  series: readonly HistogramSeries[],
  options: HistogramBinning & { barWidth?: number } = {},
): string {
  const bins = options.bins ?? 20;
  const min = options.min ?? 0;
  const max = options.max ?? 1;
  const barWidth = options.barWidth ?? 24;
  if (series.length === 0) throw new Error("textHistogram: no series given");
  const hs = series.map((s) => histogram(s.values, bins, min, max));
  const peak = Math.max(1, ...hs.flatMap((h) => h.counts));
  const countWidth = String(peak).length;
  const colWidth = barWidth + 1 + countWidth;
  const lines: string[] = [];
  const rangeWidth = 13;
  lines.push(
    `${"bin".padEnd(rangeWidth)}  ${series.map((s) => `${s.label} (n=${s.values.length})`.padEnd(colWidth)).join("  ")}`.trimEnd(),
  );
  for (let k = 0; k < bins; k++) {
    const lo = hs[0].edges[k].toFixed(2);
    const hi = hs[0].edges[k + 1].toFixed(2);
    const range = `[${lo}, ${hi}${k === bins - 1 ? "]" : ")"}`.padEnd(rangeWidth);
    const cols = hs.map((h) => {
      const c = h.counts[k];
      const bar = "#".repeat(Math.round((c / peak) * barWidth));
      return `${bar.padEnd(barWidth)} ${String(c).padStart(countWidth)}`;
    });
    lines.push(`${range}  ${cols.join("  ")}`.trimEnd());
  }
  const outside = hs.map((h, i) =>
    h.under + h.over + h.skipped > 0
      ? `${series[i].label}: ${h.under} below, ${h.over} above, ${h.skipped} not finite`
      : "",
  );
  for (const o of outside) if (o) lines.push(o);
  return lines.join("\n");
}
