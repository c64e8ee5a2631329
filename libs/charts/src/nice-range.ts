/** An axis range with round ends and the step between its ticks. */
export interface NiceRange {
  min: number;
  max: number;
  /** Distance between ticks; (max - min) / interval is a whole number. */
  interval: number;
}

/** The round step (1, 2, 2.5 or 5 times a power of ten) nearest above `raw`. */
export function niceStep(raw: number): number {
  if (!(raw > 0) || !Number.isFinite(raw))
    throw new Error(`niceStep: need a positive finite step, got ${raw}`);
  const pow = 10 ** Math.floor(Math.log10(raw));
  const f = raw / pow;
  const m = f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10;
  return m * pow;
}

/**
 * The value axis shown for data spanning [lo, hi]: padded by `pad` of the span on each side (so points and
 * bands clear the frame), widened to at least `minSpan`, then rounded outwards to about `ticks` round steps.
 * The same range in the browser and in the reports, whatever ECharts' own heuristics would pick.
 */
export function niceRange(
  lo: number,
  hi: number,
  options: { ticks?: number; pad?: number; minSpan?: number } = {},
): NiceRange {
  if (!Number.isFinite(lo) || !Number.isFinite(hi) || hi < lo)
    throw new Error(`niceRange: bad data range [${lo}, ${hi}]`);
  const ticks = options.ticks ?? 5;
  const minSpan = options.minSpan ?? 0.02;
  let a = lo;
  let b = hi;
  if (b - a < minSpan) {
    const mid = (a + b) / 2;
    a = mid - minSpan / 2;
    b = mid + minSpan / 2;
  }
  const pad = (b - a) * (options.pad ?? 0.05);
  a -= pad;
  b += pad;
  const interval = niceStep((b - a) / ticks);
  // Rounding through the step count keeps floating-point dust (0.30000000000000004) out of the labels.
  const digits = Math.max(0, -Math.floor(Math.log10(interval)) + 2);
  const round = (v: number) => Number(v.toFixed(digits));
  return {
    min: round(Math.floor(a / interval) * interval),
    max: round(Math.ceil(b / interval) * interval),
    interval,
  };
}

/** The [min, max] of the finite values among `values` (undefined when there is none). */
export function extent(values: Iterable<number | null>): [number, number] | undefined {
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (const v of values) {
    if (v === null || !Number.isFinite(v)) continue;
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  return lo <= hi ? [lo, hi] : undefined;
}
