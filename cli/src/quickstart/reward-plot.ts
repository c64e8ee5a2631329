import { drawText, FONT_HEIGHT, type Image, type Rgb, solidImage, textWidth } from "@idpo/data";

/** One point of the reward plot: a model and its mean reward with a 95 % interval. */
export interface RewardPoint {
  /** X-axis label, e.g. "base", "1". */
  label: string;
  mean: number;
  low: number;
  high: number;
}

function fillRect(img: Image, x: number, y: number, w: number, h: number, c: Rgb): void {
  for (let i = Math.max(0, Math.round(y)); i < Math.min(img.height, Math.round(y + h)); i++) {
    for (let j = Math.max(0, Math.round(x)); j < Math.min(img.width, Math.round(x + w)); j++) {
      const o = (i * img.width + j) * 3;
      img.data[o] = c[0];
      img.data[o + 1] = c[1];
      img.data[o + 2] = c[2];
    }
  }
}

/** A 2-pixel line from (x0, y0) to (x1, y1), by dense sampling (plots are small). */
function line(img: Image, x0: number, y0: number, x1: number, y1: number, c: Rgb): void {
  const n = Math.max(1, Math.ceil(Math.hypot(x1 - x0, y1 - y0)));
  for (let s = 0; s <= n; s++) {
    const t = s / n;
    fillRect(img, x0 + (x1 - x0) * t - 1, y0 + (y1 - y0) * t - 1, 2, 2, c);
  }
}

function tick(v: number): string {
  return v.toFixed(2);
}

/**
 * Mean reward per model as a line with 95 % error bars (y range fitted to the intervals), axes with
 * labelled ticks and a title, drawn into pixels for `encodePng`.
 */
export function rewardPlot(
  points: readonly RewardPoint[],
  opts: { title?: string; width?: number; height?: number } = {},
): Image {
  if (points.length === 0) throw new Error("rewardPlot: no points");
  for (const p of points) {
    if (![p.mean, p.low, p.high].every(Number.isFinite))
      throw new Error(`rewardPlot: point ${p.label} is not finite`);
  }
  const W = opts.width ?? 480;
  const H = opts.height ?? 300;
  const s = 2;
  const img = solidImage(H, W, [1, 1, 1]);
  const black: Rgb = [0, 0, 0];
  const gray: Rgb = [0.82, 0.82, 0.82];
  const blue: Rgb = [0.16, 0.35, 0.8];
  let lo = Math.min(...points.map((p) => p.low));
  let hi = Math.max(...points.map((p) => p.high));
  if (hi - lo < 0.02) {
    lo -= 0.01;
    hi += 0.01;
  }
  const pad = (hi - lo) * 0.1;
  lo -= pad;
  hi += pad;
  const left = 12 + textWidth(tick(hi), s) + 6;
  const top = opts.title ? 12 + FONT_HEIGHT * s + 10 : 12;
  const bottom = H - (FONT_HEIGHT * s + 16);
  const right = W - 16;
  const yOf = (v: number) => bottom - ((v - lo) / (hi - lo)) * (bottom - top);
  const n = points.length;
  const xOf = (i: number) => (n === 1 ? (left + right) / 2 : left + 24 + (i * (right - left - 48)) / (n - 1));

  if (opts.title) drawText(img, opts.title, left, 10, black, s);
  for (let k = 0; k <= 4; k++) {
    const v = lo + ((hi - lo) * k) / 4;
    const y = yOf(v);
    fillRect(img, left + 1, y, right - left, 1, gray);
    drawText(img, tick(v), left - 6 - textWidth(tick(v), s), Math.round(y - (FONT_HEIGHT * s) / 2), black, s);
  }
  fillRect(img, left, top, 1, bottom - top + 1, black);
  fillRect(img, left, bottom, right - left + 1, 1, black);
  for (let i = 0; i < n; i++) {
    const p = points[i];
    const x = xOf(i);
    if (i > 0) line(img, xOf(i - 1), yOf(points[i - 1].mean), x, yOf(p.mean), blue);
    fillRect(img, x - 1, yOf(p.high), 2, yOf(p.low) - yOf(p.high), black);
    fillRect(img, x - 5, yOf(p.high), 10, 1, black);
    fillRect(img, x - 5, yOf(p.low), 10, 1, black);
    fillRect(img, x - 4, yOf(p.mean) - 4, 8, 8, blue);
    const tw = textWidth(p.label, s);
    drawText(img, p.label, Math.round(x - tw / 2), bottom + 8, black, s);
  }
  return img;
}
