import {
  assertImage,
  assertImageBatch,
  BACKGROUNDS,
  batchImage,
  COLORS,
  type Image,
  type ImageBatch,
  type Rgb,
  type ShapeName,
  type ShapesPrompt,
  SIZE_RADIUS,
  toShapesPrompt,
} from "@idpo/data";

/** The oracle reward of one image and its six component scores, all in [0, 1] (docs/architecture.md). */
export interface OracleScore {
  /** R = 0.20 color + 0.15 bg + 0.20 shape + 0.15 size + 0.15 center + 0.15 clean. */
  reward: number;
  /** 1 − ‖c̄ − color‖₂/√3, c̄ the mask-weighted mean foreground color. */
  color: number;
  /** 1 − mean of d_p over the one-pixel border ring. */
  bg: number;
  /** exp(−((f − f⋆)/0.15)²), f the fill fraction of the soft bounding box. */
  shape: number;
  /** min(A/a⋆, a⋆/A), A the mask area fraction, a⋆ = π r⋆². */
  size: number;
  /** 1 − min(1, ‖μ − (0.5, 0.5)‖₂/0.5), μ the mask-weighted centroid. */
  center: number;
  /** 1 − min(1, s/0.1), s the mean per-channel std over interior foreground pixels. */
  clean: number;
}

/** Component weights of the reward. */
export const ORACLE_WEIGHTS: Readonly<Record<Exclude<keyof OracleScore, "reward">, number>> = Object.freeze({
  color: 0.2,
  bg: 0.15,
  shape: 0.2,
  size: 0.15,
  center: 0.15,
  clean: 0.15,
});

/** Target fill fraction f⋆ of the soft bounding box per shape. */
export const SHAPE_FILL: Readonly<Record<ShapeName, number>> = Object.freeze({
  circle: Math.PI / 4,
  square: 1,
  triangle: 0.5,
});

const SQRT3 = Math.sqrt(3);

// Per-pixel scratch reused across calls: the oracle runs thousands of times per evaluation.
let maskScratch = new Float64Array(0);
let rowMaxScratch = new Float64Array(0);
let colMaxScratch = new Float64Array(0);

function scratch(n: number, s: number): void {
  if (maskScratch.length < n) maskScratch = new Float64Array(n);
  if (rowMaxScratch.length < s) {
    rowMaxScratch = new Float64Array(s);
    colMaxScratch = new Float64Array(s);
  }
}

/**
 * The oracle reward R(x, prompt) ∈ [0, 1] of an S×S image (docs/architecture.md), from pixels only, with its
 * per-component breakdown. Pure: depends only on the pixel values and the parsed prompt.
 *
 * Throws when the image is malformed or not square, or when the prompt is outside the grammar.
 * Values outside [0, 1] are used as given (the formula does not clip x).
 */
export function oracleReward(image: Image, prompt: string | ShapesPrompt): OracleScore {
  assertImage(image, "oracleReward: image");
  if (image.height !== image.width) {
    throw new Error(`oracleReward: image must be square (H = W = S), got ${image.height}x${image.width}`);
  }
  const p = toShapesPrompt(prompt);
  return scoreSquare(image.data, 0, image.height, p);
}

/**
 * The oracle reward of every image of an NHWC batch against its prompt (`prompts.length === batch.n`).
 * The error for a bad prompt names its index.
 */
export function oracleRewardBatch(
  batch: ImageBatch,
  prompts: readonly (string | ShapesPrompt)[],
): OracleScore[] {
  assertImageBatch(batch, "oracleRewardBatch: batch");
  if (prompts.length !== batch.n) {
    throw new Error(`oracleRewardBatch: ${prompts.length} prompts for ${batch.n} images`);
  }
  if (batch.height !== batch.width) {
    throw new Error(`oracleRewardBatch: images must be square, got ${batch.height}x${batch.width}`);
  }
  const out: OracleScore[] = [];
  for (let i = 0; i < batch.n; i++) {
    let p: ShapesPrompt;
    try {
      p = toShapesPrompt(prompts[i]);
    } catch (e) {
      throw new Error(`oracleRewardBatch: prompt ${i}: ${(e as Error).message}`);
    }
    out.push(scoreSquare(batchImage(batch, i).data, 0, batch.height, p));
  }
  return out;
}

/** The weighted sum of the six components (the reward of a breakdown). */
export function combineOracle(c: Omit<OracleScore, "reward">): number {
  return (
    ORACLE_WEIGHTS.color * c.color +
    ORACLE_WEIGHTS.bg * c.bg +
    ORACLE_WEIGHTS.shape * c.shape +
    ORACLE_WEIGHTS.size * c.size +
    ORACLE_WEIGHTS.center * c.center +
    ORACLE_WEIGHTS.clean * c.clean
  );
}

/** The sums of the mask pass: border distance, mask mass, mask-weighted color and centroid. */
interface MaskSums {
  border: number;
  mSum: number;
  cR: number;
  cG: number;
  cB: number;
  muI: number;
  muJ: number;
}

function scoreSquare(x: Float32Array, base: number, s: number, p: ShapesPrompt): OracleScore {
  const n = s * s;
  scratch(n, s);
  const sums = maskPass(x, base, s, BACKGROUNDS[p.bg]);
  const { mSum } = sums;
  const ringCount = s === 1 ? 1 : 4 * s - 4;
  const bg = 1 - sums.border / ringCount;

  if (mSum < 1) {
    return { reward: ORACLE_WEIGHTS.bg * bg, color: 0, bg, shape: 0, size: 0, center: 0, clean: 0 };
  }

  const color = colorScore(sums, COLORS[p.color]);
  const center = centerScore(sums);

  // Size.
  const area = mSum / n;
  const rStar = SIZE_RADIUS[p.size];
  const aStar = Math.PI * rStar * rStar;
  const size = area < aStar ? area / aStar : aStar / area;

  const shape = shapeScore(mSum, s, p.shape);
  const clean = cleanScore(x, base, s);
  const reward = combineOracle({ color, bg, shape, size, center, clean });
  return { reward, color, bg, shape, size, center, clean };
}

/**
 * One pass over the pixels: the soft foreground mask m (into `maskScratch`), its row and column maxima (into
 * `rowMaxScratch` and `colMaxScratch`) and the sums the components are computed from.
 */
function maskPass(x: Float32Array, base: number, s: number, bgc: Rgb): MaskSums {
  const m = maskScratch;
  const rowMax = rowMaxScratch;
  const colMax = colMaxScratch;
  const bR = bgc[0];
  const bG = bgc[1];
  const bB = bgc[2];

  let border = 0;
  let mSum = 0;
  let cR = 0;
  let cG = 0;
  let cB = 0;
  let muI = 0;
  let muJ = 0;
  for (let j = 0; j < s; j++) colMax[j] = 0;
  for (let i = 0; i < s; i++) {
    let rMax = 0;
    const yi = (i + 0.5) / s;
    for (let j = 0; j < s; j++) {
      const k = i * s + j;
      const o = base + k * 3;
      const r = x[o];
      const g = x[o + 1];
      const b = x[o + 2];
      const dr = r - bR;
      const dg = g - bG;
      const db = b - bB;
      const d = Math.sqrt(dr * dr + dg * dg + db * db) / SQRT3;
      if (i === 0 || i === s - 1 || j === 0 || j === s - 1) border += d;
      let mk = (d - 0.15) / 0.2;
      mk = mk < 0 ? 0 : Math.min(mk, 1);
      m[k] = mk;
      mSum += mk;
      cR += mk * r;
      cG += mk * g;
      cB += mk * b;
      muI += mk * yi;
      muJ += mk * ((j + 0.5) / s);
      if (mk > rMax) rMax = mk;
      if (mk > colMax[j]) colMax[j] = mk;
    }
    rowMax[i] = rMax;
  }
  return { border, mSum, cR, cG, cB, muI, muJ };
}

function colorScore(sums: MaskSums, fg: Rgb): number {
  const er = sums.cR / sums.mSum - fg[0];
  const eg = sums.cG / sums.mSum - fg[1];
  const eb = sums.cB / sums.mSum - fg[2];
  return 1 - Math.sqrt(er * er + eg * eg + eb * eb) / SQRT3;
}

function centerScore(sums: MaskSums): number {
  const ci = sums.muI / sums.mSum - 0.5;
  const cj = sums.muJ / sums.mSum - 0.5;
  const dist = Math.sqrt(ci * ci + cj * cj) / 0.5;
  return 1 - Math.min(dist, 1);
}

/** The fill fraction of the soft bounding box (from the mask pass's row and column maxima) against f⋆. */
function shapeScore(mSum: number, s: number, shape: ShapeName): number {
  let h = 0;
  let w = 0;
  for (let t = 0; t < s; t++) {
    h += rowMaxScratch[t];
    w += colMaxScratch[t];
  }
  const f = mSum / (h * w);
  const z = (f - SHAPE_FILL[shape]) / 0.15;
  return Math.exp(-z * z);
}

/** Whether pixel k is interior foreground: m = 1 there and at its 4 neighbours. */
function isInterior(m: Float64Array, k: number, s: number): boolean {
  return m[k] === 1 && m[k - 1] === 1 && m[k + 1] === 1 && m[k - s] === 1 && m[k + s] === 1;
}

/** Per-channel std over interior pixels (off the border), two-pass, from the mask in `maskScratch`. */
function cleanScore(x: Float32Array, base: number, s: number): number {
  const m = maskScratch;
  let cnt = 0;
  let sR = 0;
  let sG = 0;
  let sB = 0;
  for (let i = 1; i < s - 1; i++) {
    for (let j = 1; j < s - 1; j++) {
      const k = i * s + j;
      if (isInterior(m, k, s)) {
        const o = base + k * 3;
        sR += x[o];
        sG += x[o + 1];
        sB += x[o + 2];
        cnt++;
      }
    }
  }
  if (cnt === 0) return 0;
  const aR = sR / cnt;
  const aG = sG / cnt;
  const aB = sB / cnt;
  let vR = 0;
  let vG = 0;
  let vB = 0;
  for (let i = 1; i < s - 1; i++) {
    for (let j = 1; j < s - 1; j++) {
      const k = i * s + j;
      if (isInterior(m, k, s)) {
        const o = base + k * 3;
        const a = x[o] - aR;
        const b = x[o + 1] - aG;
        const c = x[o + 2] - aB;
        vR += a * a;
        vG += b * b;
        vB += c * c;
      }
    }
  }
  const sd = (Math.sqrt(vR / cnt) + Math.sqrt(vG / cnt) + Math.sqrt(vB / cnt)) / 3;
  return 1 - Math.min(sd / 0.1, 1);
}

/** The oracle reward alone, in the `RewardFn` shape @idpo/data's pair generator takes. */
export function oracleRewardValue(image: Image, prompt: string | ShapesPrompt): number {
  return oracleReward(image, prompt).reward;
}
