import { drawText, FONT_HEIGHT, type Image, type Rgb, solidImage, textWidth } from "@idpo/data";

/** One line of a plot. */
export interface LineSeries {
  /** Legend label. */
  label: string;
  /** Points, drawn in order. */
  points: { x: number; y: number }[];
}

/** One panel of a plot (shares nothing with the other panels but the series colors). */
export interface PlotPanel {
  /** Title above the panel. */
  title: string;
  /** Its lines. */
  series: LineSeries[];
}

/** Layout of linePlot. */
export interface LinePlotOptions {
  /** Width of each panel in pixels (default 420). */
  panelWidth?: number;
  /** Height of the whole image (default 300). */
  height?: number;
  /** Label of the x axis (default "iteration"). */
  xLabel?: string;
}

/** Colors of the series in order (legend and lines). */
export const LINE_COLORS: readonly Rgb[] = [
  [0.1, 0.1, 0.1],
  [0.85, 0.25, 0.2],
  [0.2, 0.4, 0.85],
  [0.16, 0.6, 0.24],
  [0.9, 0.6, 0.1],
  [0.6, 0.2, 0.7],
];

const TEXT_SCALE = 2;

function setPixel(img: Image, x: number, y: number, c: Rgb): void {
  if (x < 0 || y < 0 || x >= img.width || y >= img.height) return;
  const o = (y * img.width + x) * 3;
  img.data[o] = c[0];
  img.data[o + 1] = c[1];
  img.data[o + 2] = c[2];
}

function fillRect(img: Image, x: number, y: number, w: number, h: number, c: Rgb): void {
  for (let i = y; i < y + h; i++) for (let j = x; j < x + w; j++) setPixel(img, j, i, c);
}

/** A 2-pixel-wide line from (x0, y0) to (x1, y1) (Bresenham, each point a 2×2 block). */
export function drawLine(img: Image, x0: number, y0: number, x1: number, y1: number, c: Rgb): void {
  let x = Math.round(x0);
  let y = Math.round(y0);
  const xe = Math.round(x1);
  const ye = Math.round(y1);
  const dx = Math.abs(xe - x);
  const dy = -Math.abs(ye - y);
  const sx = x < xe ? 1 : -1;
  const sy = y < ye ? 1 : -1;
  let err = dx + dy;
  for (;;) {
    fillRect(img, x, y, 2, 2, c);
    if (x === xe && y === ye) break;
    const e2 = 2 * err;
    if (e2 >= dy) {
      err += dy;
      x += sx;
    }
    if (e2 <= dx) {
      err += dx;
      y += sy;
    }
  }
}

/** Tick values: `count` evenly spaced values covering [lo, hi]. */
export function ticks(lo: number, hi: number, count: number): number[] {
  if (!(hi >= lo) || count < 2) throw new Error(`ticks: bad range [${lo}, ${hi}] or count ${count}`);
  const out: number[] = [];
  for (let i = 0; i < count; i++) out.push(lo + ((hi - lo) * i) / (count - 1));
  return out;
}

/** The y range shown: the data's range padded by 10 % (at least ±0.01), rounded outwards to 0.01. */
export function yRange(values: readonly number[]): [number, number] {
  if (values.length === 0) return [0, 1];
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const pad = Math.max(0.01, (hi - lo) * 0.1);
  return [Math.floor((lo - pad) * 100) / 100, Math.ceil((hi + pad) * 100) / 100];
}

/**
 * Panels of line plots side by side (e.g. reward per iteration on train and on test prompts), each
 * with its own y range, integer x ticks, a title and a shared legend, for `encodePng`.
 */
export function linePlot(panels: readonly PlotPanel[], options: LinePlotOptions = {}): Image {
  if (panels.length === 0) throw new Error("linePlot: no panels");
  const labels = panels[0].series.map((s) => s.label);
  if (labels.length > LINE_COLORS.length) throw new Error(`linePlot: at most ${LINE_COLORS.length} series`);
  const PW = options.panelWidth ?? 420;
  const legendRows = labels.length;
  const lineH = (FONT_HEIGHT + 3) * TEXT_SCALE;
  const H = options.height ?? 300;
  const legendH = legendRows * lineH + 8;
  const img = solidImage(H + legendH, PW * panels.length, [1, 1, 1]);
  const black: Rgb = [0, 0, 0];
  const gray: Rgb = [0.8, 0.8, 0.8];
  panels.forEach((panel, p) => {
    const ox = p * PW;
    const all = panel.series.flatMap((s) => s.points);
    const [ylo, yhi] = yRange(all.map((q) => q.y));
    const xs = all.map((q) => q.x);
    const xlo = xs.length ? Math.min(...xs) : 0;
    const xhi = xs.length ? Math.max(xs.length ? Math.max(...xs) : 1, xlo + 1) : 1;
    const left = ox + 14 + textWidth("0.000", TEXT_SCALE);
    const right = ox + PW - 16;
    const top = 10 + lineH;
    const bottom = H - (lineH * 2 + 6);
    const X = (x: number) => left + ((x - xlo) / (xhi - xlo)) * (right - left);
    const Y = (y: number) => bottom - ((y - ylo) / (yhi - ylo)) * (bottom - top);
    drawText(img, panel.title, left, 4, black, TEXT_SCALE);
    for (const t of ticks(ylo, yhi, 5)) {
      const y = Math.round(Y(t));
      for (let x = left; x <= right; x += 3) setPixel(img, x, y, gray);
      const label = t.toFixed(3);
      drawText(img, label, left - 6 - textWidth(label, TEXT_SCALE), y - FONT_HEIGHT, black, TEXT_SCALE);
    }
    // One tick per integer while they fit (iterations); otherwise six rounded ticks (training steps).
    const xTicks: number[] = [];
    if (xhi - xlo <= 12) for (let x = Math.ceil(xlo); x <= Math.floor(xhi); x++) xTicks.push(x);
    else for (const t of ticks(xlo, xhi, 6)) xTicks.push(Math.round(t));
    for (const x of xTicks) {
      const px = Math.round(X(x));
      fillRect(img, px, bottom, 1, 5, black);
      const label = String(x);
      drawText(img, label, px - Math.floor(textWidth(label, TEXT_SCALE) / 2), bottom + 8, black, TEXT_SCALE);
    }
    const xl = options.xLabel ?? "iteration";
    drawText(
      img,
      xl,
      Math.round((left + right - textWidth(xl, TEXT_SCALE)) / 2),
      bottom + 8 + lineH,
      black,
      TEXT_SCALE,
    );
    fillRect(img, left, top, 1, bottom - top + 1, black);
    fillRect(img, left, bottom, right - left + 1, 1, black);
    panel.series.forEach((s, i) => {
      const c = LINE_COLORS[i % LINE_COLORS.length];
      for (let k = 1; k < s.points.length; k++) {
        drawLine(img, X(s.points[k - 1].x), Y(s.points[k - 1].y), X(s.points[k].x), Y(s.points[k].y), c);
      }
      for (const q of s.points) fillRect(img, Math.round(X(q.x)) - 2, Math.round(Y(q.y)) - 2, 5, 5, c);
    });
  });
  labels.forEach((label, i) => {
    const y = H + 4 + i * lineH;
    fillRect(img, 14, y, 5 * TEXT_SCALE, FONT_HEIGHT * TEXT_SCALE, LINE_COLORS[i]);
    drawText(img, label, 14 + 7 * TEXT_SCALE, y, black, TEXT_SCALE);
  });
  return img;
}
