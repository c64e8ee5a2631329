/** A sample mean with its two-sided confidence interval. */
export interface MeanCI {
  /** Number of values. */
  n: number;
  /** Sample mean. */
  mean: number;
  /** Sample standard deviation (n − 1 denominator; NaN when n < 2). */
  std: number;
  /** Half-width of the interval: t_{(1+level)/2, n−1} · std/√n (NaN when n < 2). */
  halfWidth: number;
  /** mean − halfWidth. */
  lo: number;
  /** mean + halfWidth. */
  hi: number;
  /** Confidence level, e.g. 0.95. */
  level: number;
}

/**
 * Mean with a Student-t confidence interval (default 95 %). Throws on an empty or non-finite input.
 * With one value the interval is undefined: std, halfWidth, lo and hi are NaN.
 */
export function meanCI(values: ArrayLike<number>, level = 0.95): MeanCI {
  const n = values.length;
  if (n === 0) throw new Error("meanCI: no values");
  if (!(level > 0 && level < 1)) throw new Error(`meanCI: level must be in (0, 1), got ${level}`);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (!Number.isFinite(v)) throw new Error(`meanCI: value ${i} is ${v}`);
    sum += v;
  }
  const mean = sum / n;
  if (n < 2)
    return { n, mean, std: Number.NaN, halfWidth: Number.NaN, lo: Number.NaN, hi: Number.NaN, level };
  let ss = 0;
  for (let i = 0; i < n; i++) {
    const d = values[i] - mean;
    ss += d * d;
  }
  const std = Math.sqrt(ss / (n - 1));
  const halfWidth = (studentTQuantile((1 + level) / 2, n - 1) * std) / Math.sqrt(n);
  return { n, mean, std, halfWidth, lo: mean - halfWidth, hi: mean + halfWidth, level };
}

/** Quantile with linear interpolation between order statistics (numpy's default "linear" method). */
export function quantile(values: ArrayLike<number>, q: number): number {
  return quantiles(values, [q])[0];
}

/** Several quantiles of the same values (sorted once). */
export function quantiles(values: ArrayLike<number>, qs: readonly number[]): number[] {
  const n = values.length;
  if (n === 0) throw new Error("quantiles: no values");
  const s = Float64Array.from(values as ArrayLike<number>).sort();
  if (Number.isNaN(s[n - 1])) throw new Error("quantiles: values contain NaN");
  return qs.map((q) => {
    if (!(q >= 0 && q <= 1)) throw new Error(`quantiles: q must be in [0, 1], got ${q}`);
    const pos = q * (n - 1);
    const lo = Math.floor(pos);
    const hi = Math.min(n - 1, lo + 1);
    return s[lo] + (pos - lo) * (s[hi] - s[lo]);
  });
}

/** Natural log of the gamma function (Lanczos, g = 7, 9 terms; ~1e-15 relative). */
function logGamma(x: number): number {
  const c = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
    12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
  ];
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - logGamma(1 - x);
  const xx = x - 1;
  let a = c[0];
  const t = xx + 7.5;
  for (let i = 1; i < 9; i++) a += c[i] / (xx + i);
  return 0.5 * Math.log(2 * Math.PI) + (xx + 0.5) * Math.log(t) - t + Math.log(a);
}

/** Continued fraction of the regularised incomplete beta (modified Lentz). */
function betaContinuedFraction(a: number, b: number, x: number): number {
  const tiny = 1e-300;
  let c = 1;
  let d = 1 - ((a + b) * x) / (a + 1);
  if (Math.abs(d) < tiny) d = tiny;
  d = 1 / d;
  let h = d;
  for (let m = 1; m <= 300; m++) {
    const m2 = 2 * m;
    let aa = (m * (b - m) * x) / ((a + m2 - 1) * (a + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    h *= d * c;
    aa = (-(a + m) * (a + b + m) * x) / ((a + m2) * (a + m2 + 1));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-15) break;
  }
  return h;
}

/** Regularised incomplete beta I_x(a, b). */
export function incompleteBeta(x: number, a: number, b: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const lbt = logGamma(a + b) - logGamma(a) - logGamma(b) + a * Math.log(x) + b * Math.log(1 - x);
  const bt = Math.exp(lbt);
  if (x < (a + 1) / (a + b + 2)) return (bt * betaContinuedFraction(a, b, x)) / a;
  return 1 - (bt * betaContinuedFraction(b, a, 1 - x)) / b;
}

/** CDF of Student's t with `df` degrees of freedom. */
export function studentTCdf(t: number, df: number): number {
  const x = df / (df + t * t);
  const tail = 0.5 * incompleteBeta(x, df / 2, 0.5);
  return t >= 0 ? 1 - tail : tail;
}

/** Quantile of Student's t (inverse CDF) by bisection on the CDF, to ~1e-12. */
export function studentTQuantile(p: number, df: number): number {
  if (!(p > 0 && p < 1)) throw new Error(`studentTQuantile: p must be in (0, 1), got ${p}`);
  if (!(df > 0)) throw new Error(`studentTQuantile: df must be > 0, got ${df}`);
  if (p === 0.5) return 0;
  let lo = -1;
  let hi = 1;
  while (studentTCdf(lo, df) > p) lo *= 2;
  while (studentTCdf(hi, df) < p) hi *= 2;
  for (let it = 0; it < 200 && hi - lo > 1e-12 * Math.max(1, Math.abs(hi)); it++) {
    const mid = 0.5 * (lo + hi);
    if (studentTCdf(mid, df) < p) lo = mid;
    else hi = mid;
  }
  return 0.5 * (lo + hi);
}
