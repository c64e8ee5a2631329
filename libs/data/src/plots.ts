import { assertImage, type Image, solidImage } from "./image.js";
import { drawText, FONT_HEIGHT, textWidth } from "./pixel-font.js";
import { upscaleNearest } from "./resize.js";
import type { Rgb } from "./shapes-grammar.js";

/** Layout of an image grid. */
export interface GridOptions {
  /** Pixels between cells and around the grid (default 2). */
  padding?: number;
  /** Color of the padding (default white). */
  background?: Rgb;
  /** Integer nearest-neighbour enlargement of every cell (default 1). */
  scale?: number;
}

/**
 * Lays out rows of images (rows may have different lengths; cells are as large as the largest image,
 * smaller images sit at the cell's top-left) into one image, e.g. for sample grids.
 */
export function composeGrid(rows: readonly (readonly Image[])[], options: GridOptions = {}): Image {
  const pad = options.padding ?? 2;
  const scale = options.scale ?? 1;
  const bgc = options.background ?? [1, 1, 1];
  if (!Number.isInteger(pad) || pad < 0)
    throw new Error(`composeGrid: padding must be a non-negative integer, got ${pad}`);
  if (rows.length === 0 || rows.every((r) => r.length === 0)) throw new Error("composeGrid: no images given");
  let cellH = 0;
  let cellW = 0;
  let cols = 0;
  rows.forEach((row, r) => {
    cols = Math.max(cols, row.length);
    row.forEach((img, c) => {
      assertImage(img, `composeGrid: row ${r} image ${c}`);
      cellH = Math.max(cellH, img.height * scale);
      cellW = Math.max(cellW, img.width * scale);
    });
  });
  const out = solidImage(pad + rows.length * (cellH + pad), pad + cols * (cellW + pad), bgc);
  for (let r = 0; r < rows.length; r++) {
    for (let c = 0; c < rows[r].length; c++) {
      const img = upscaleNearest(rows[r][c], scale);
      blit(out, img, pad + r * (cellH + pad), pad + c * (cellW + pad));
    }
  }
  return out;
}

/** Copies `src` into `dst` with its top-left corner at (top, left), clipped to `dst`. */
export function blit(dst: Image, src: Image, top: number, left: number): void {
  for (let i = 0; i < src.height; i++) {
    const y = top + i;
    if (y < 0 || y >= dst.height) continue;
    for (let j = 0; j < src.width; j++) {
      const x = left + j;
      if (x < 0 || x >= dst.width) continue;
      const s = (i * src.width + j) * 3;
      const d = (y * dst.width + x) * 3;
      dst.data[d] = src.data[s];
      dst.data[d + 1] = src.data[s + 1];
      dst.data[d + 2] = src.data[s + 2];
    }
  }
}

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

/** One named series of values for the histogram plots. */
export interface HistogramSeries {
  /** Legend label. */
  label: string;
  /** Values. */
  values: ArrayLike<number>;
}

/** Options of the histogram plots. */
export interface HistogramPlotOptions {
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
  options: HistogramPlotOptions & { barWidth?: number } = {},
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

const SERIES_COLORS: Rgb[] = [
  [0.16, 0.6, 0.24],
  [0.85, 0.25, 0.2],
  [0.2, 0.4, 0.85],
  [0.9, 0.6, 0.1],
];

/**
 * A bar plot of one or more histograms drawn into pixels (bars side by side per bin, one color per
 * series, axes with ticks at min, mid and max, a legend and an optional title), for `encodePng`.
 */
export function histogramImage(
  series: readonly HistogramSeries[],
  options: HistogramPlotOptions & { width?: number; height?: number; title?: string } = {},
): Image {
  const bins = options.bins ?? 20;
  const min = options.min ?? 0;
  const max = options.max ?? 1;
  const W = options.width ?? 480;
  const H = options.height ?? 280;
  if (series.length === 0) throw new Error("histogramImage: no series given");
  if (series.length > SERIES_COLORS.length)
    throw new Error(`histogramImage: at most ${SERIES_COLORS.length} series`);
  const hs = series.map((s) => histogram(s.values, bins, min, max));
  const peak = Math.max(1, ...hs.flatMap((h) => h.counts));
  const img = solidImage(H, W, [1, 1, 1]);
  const black: Rgb = [0, 0, 0];
  const gray: Rgb = [0.45, 0.45, 0.45];
  const s = 2; // font scale
  const left = 16 + textWidth(String(peak), s);
  const top = 12 + (FONT_HEIGHT + 3) * s * (series.length + (options.title ? 1 : 0));
  const bottom = H - (FONT_HEIGHT * s + 12);
  const right = W - 12;
  const plotW = right - left;
  const plotH = bottom - top;
  if (plotW < bins * series.length || plotH < 10)
    throw new Error(`histogramImage: ${W}x${H} is too small for ${bins} bins`);

  if (options.title) drawText(img, options.title, left, 6, black, s);
  series.forEach((ser, i) => {
    const y = 6 + (FONT_HEIGHT + 3) * s * (i + (options.title ? 1 : 0));
    fillRect(img, right - 120, y, 5 * s, FONT_HEIGHT * s, SERIES_COLORS[i]);
    drawText(img, `${ser.label} ${ser.values.length}`, right - 120 + 7 * s, y, black, s);
  });

  const binW = plotW / bins;
  for (let k = 0; k < bins; k++) {
    for (let i = 0; i < hs.length; i++) {
      const c = hs[i].counts[k];
      if (c === 0) continue;
      const x0 = Math.round(left + k * binW + (i * binW) / hs.length) + 1;
      const x1 = Math.round(left + k * binW + ((i + 1) * binW) / hs.length);
      const hgt = Math.max(1, Math.round((c / peak) * plotH));
      fillRect(img, x0, bottom - hgt, Math.max(1, x1 - x0), hgt, SERIES_COLORS[i]);
    }
  }
  fillRect(img, left, top, 1, plotH + 1, black);
  fillRect(img, left, bottom, plotW + 1, 1, black);
  const ticks = [min, (min + max) / 2, max];
  ticks.forEach((t, i) => {
    const x = Math.round(left + (i * plotW) / 2);
    fillRect(img, x, bottom, 1, 5, black);
    const label = formatTick(t);
    const tw = textWidth(label, s);
    const tx = Math.min(W - tw - 1, Math.max(0, x - Math.floor(tw / 2)));
    drawText(img, label, tx, bottom + 7, black, s);
  });
  fillRect(img, left - 4, top, 4, 1, black);
  drawText(img, String(peak), left - 6 - textWidth(String(peak), s), top, gray, s);
  drawText(img, "0", left - 6 - textWidth("0", s), bottom - FONT_HEIGHT * s, gray, s);
  return img;
}

function formatTick(v: number): string {
  return Number.isInteger(v) ? v.toFixed(1) : String(Math.round(v * 1000) / 1000);
}

function fillRect(img: Image, x: number, y: number, w: number, h: number, color: Rgb): void {
  for (let i = Math.max(0, y); i < Math.min(img.height, y + h); i++) {
    for (let j = Math.max(0, x); j < Math.min(img.width, x + w); j++) {
      const o = (i * img.width + j) * 3;
      img.data[o] = color[0];
      img.data[o + 1] = color[1];
      img.data[o + 2] = color[2];
    }
  }
}
