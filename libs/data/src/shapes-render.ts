import type { DataRng } from "./data-rng.js";
import { createImage, type Image } from "./image.js";
import {
  BACKGROUNDS,
  COLOR_NAMES,
  COLORS,
  type ColorName,
  isAllowedPair,
  type Rgb,
  SHAPES,
  type ShapeName,
  type ShapesPrompt,
  SIZE_RADIUS,
  toShapesPrompt,
} from "./shapes-grammar.js";

/** Where and how one shape is drawn; lengths are fractions of the image side. */
export interface ShapeGeometry {
  /** Which shape. */
  shape: ShapeName;
  /** Centre column, as a fraction of the side (0.5 = centred). */
  cx: number;
  /** Centre row, as a fraction of the side (0.5 = centred). */
  cy: number;
  /** Circle radius r (the square and triangle have the same area π r²). */
  radius: number;
  /** Foreground RGB. */
  color: Rgb;
  /** Background RGB. */
  bg: Rgb;
}

/** Sub-samples per axis for circle pixels that straddle the edge (SS² samples each). */
const SS = 16;
/** Half the diagonal of a pixel: a pixel whose centre is farther than this from the edge is not cut by it. */
const HALF_DIAG = Math.SQRT1_2 + 1e-9;
const SQRT3_2 = Math.sqrt(3) / 2;

/**
 * Outward edge normals (nx, ny) of the polygons, each edge at distance `p` from the centre (y grows
 * downwards): the square's four sides, and the upward triangle's base (0, 1) and two slanted sides.
 */
const SQUARE_NORMALS = [1, 0, -1, 0, 0, 1, 0, -1];
const TRIANGLE_NORMALS = [0, 1, SQRT3_2, -0.5, -SQRT3_2, -0.5];

/**
 * Distance from the centre to each edge (pixels): the circle's radius; the square's half-side r·√π/2
 * (area π r²); the triangle's inradius H/3 with side a = 2r·√(π/√3) (area π r²), height H = a·√3/2,
 * which puts its centroid at the centre.
 */
function edgeDistance(shape: ShapeName, rPx: number): number {
  if (shape === "square") return (rPx * Math.sqrt(Math.PI)) / 2;
  if (shape === "triangle") return (2 * rPx * Math.sqrt(Math.PI / Math.sqrt(3)) * SQRT3_2) / 3;
  return rPx;
}

/**
 * Signed distance (pixels) from a point, relative to the centre, to the shape boundary, negative
 * inside: exact for the circle; for the polygons the max over edge half-planes, which is exact inside
 * and a lower bound outside, so it never calls a cut pixel "fully outside".
 */
function signedDistance(shape: ShapeName, dx: number, dy: number, p: number): number {
  if (shape === "circle") return Math.sqrt(dx * dx + dy * dy) - p;
  const nrm = shape === "square" ? SQUARE_NORMALS : TRIANGLE_NORMALS;
  let m = Number.NEGATIVE_INFINITY;
  for (let e = 0; e < nrm.length; e += 2) {
    const d = nrm[e] * dx + nrm[e + 1] * dy - p;
    if (d > m) m = d;
  }
  return m;
}

// Ping-pong vertex buffers for clipping a pixel square by at most four half-planes (≤ 8 vertices).
const clipA = new Float64Array(32);
const clipB = new Float64Array(32);

/**
 * Exact area of the unit pixel [x0, x0+1]×[y0, y0+1] (relative to the centre) inside a convex polygon
 * given by outward normals with every edge at distance p: Sutherland-Hodgman clipping, then the
 * shoelace formula.
 */
function polygonCoverage(normals: readonly number[], p: number, x0: number, y0: number): number {
  let src = clipA;
  let dst = clipB;
  src[0] = x0;
  src[1] = y0;
  src[2] = x0 + 1;
  src[3] = y0;
  src[4] = x0 + 1;
  src[5] = y0 + 1;
  src[6] = x0;
  src[7] = y0 + 1;
  let n = 4;
  for (let e = 0; e < normals.length && n > 0; e += 2) {
    const nx = normals[e];
    const ny = normals[e + 1];
    let m = 0;
    for (let k = 0; k < n; k++) {
      const ax = src[2 * k];
      const ay = src[2 * k + 1];
      const k2 = k + 1 === n ? 0 : k + 1;
      const bx = src[2 * k2];
      const by = src[2 * k2 + 1];
      const da = nx * ax + ny * ay - p;
      const db = nx * bx + ny * by - p;
      if (da <= 0) {
        dst[2 * m] = ax;
        dst[2 * m + 1] = ay;
        m++;
      }
      if ((da < 0 && db > 0) || (da > 0 && db < 0)) {
        const t = da / (da - db);
        dst[2 * m] = ax + t * (bx - ax);
        dst[2 * m + 1] = ay + t * (by - ay);
        m++;
      }
    }
    const tmp = src;
    src = dst;
    dst = tmp;
    n = m;
  }
  let area = 0;
  for (let k = 0; k < n; k++) {
    const k2 = k + 1 === n ? 0 : k + 1;
    area += src[2 * k] * src[2 * k2 + 1] - src[2 * k2] * src[2 * k + 1];
  }
  const a = Math.abs(area) / 2;
  return Math.min(a, 1);
}

/**
 * Draws one anti-aliased shape over a flat background into `out` (or a new S×S image): each pixel is
 * bg + coverage·(color − bg). Coverage is exact for the square and triangle (the pixel clipped by the
 * polygon), and from 16×16 sub-samples for circle pixels the edge passes through.
 */
export function renderShape(geom: ShapeGeometry, size: number, out?: Image): Image {
  if (!Number.isInteger(size) || size <= 0)
    throw new Error(`renderShape: size must be a positive integer, got ${size}`);
  if (!(SHAPES as readonly string[]).includes(geom.shape))
    throw new Error(`renderShape: unknown shape ${geom.shape}`);
  if (!(geom.radius >= 0) || !Number.isFinite(geom.cx) || !Number.isFinite(geom.cy)) {
    throw new Error(`renderShape: bad geometry ${JSON.stringify(geom)}`);
  }
  const img = out ?? createImage(size, size);
  if (img.height !== size || img.width !== size) {
    throw new Error(`renderShape: output is ${img.height}x${img.width}, expected ${size}x${size}`);
  }
  const d = img.data;
  const cxPx = geom.cx * size;
  const cyPx = geom.cy * size;
  const p = edgeDistance(geom.shape, geom.radius * size);
  const normals = geom.shape === "square" ? SQUARE_NORMALS : TRIANGLE_NORMALS;
  const [br, bgc, bb] = geom.bg;
  const dr = geom.color[0] - br;
  const dg = geom.color[1] - bgc;
  const db = geom.color[2] - bb;
  const inv = 1 / (SS * SS);
  for (let i = 0; i < size; i++) {
    const py = i + 0.5 - cyPx;
    for (let j = 0; j < size; j++) {
      const px = j + 0.5 - cxPx;
      const sd = signedDistance(geom.shape, px, py, p);
      let cov: number;
      if (sd <= -HALF_DIAG) cov = 1;
      else if (sd >= HALF_DIAG) cov = 0;
      else if (geom.shape !== "circle") cov = polygonCoverage(normals, p, px - 0.5, py - 0.5);
      else {
        let hits = 0;
        for (let a = 0; a < SS; a++) {
          const sy = py - 0.5 + (a + 0.5) / SS;
          for (let b = 0; b < SS; b++) {
            const sx = px - 0.5 + (b + 0.5) / SS;
            if (sx * sx + sy * sy <= p * p) hits++;
          }
        }
        cov = hits * inv;
      }
      const o = (i * size + j) * 3;
      d[o] = br + cov * dr;
      d[o + 1] = bgc + cov * dg;
      d[o + 2] = bb + cov * db;
    }
  }
  return img;
}

/** The geometry of the ideal render of a prompt: centred, radius r*, exact palette colors. */
export function idealGeometry(prompt: string | ShapesPrompt): ShapeGeometry {
  const p = toShapesPrompt(prompt);
  return {
    shape: p.shape,
    cx: 0.5,
    cy: 0.5,
    radius: SIZE_RADIUS[p.size],
    color: COLORS[p.color],
    bg: BACKGROUNDS[p.bg],
  };
}

/** The ideal S×S render of a prompt (docs/architecture.md): centred, exact size and colors, anti-aliased. */
export function renderIdeal(prompt: string | ShapesPrompt, size: number): Image {
  return renderShape(idealGeometry(prompt), size);
}

/** Degradation magnitudes at strength u = 1 (each scales linearly with u). Defaults: docs/architecture.md. */
export interface DegradeConfig {
  /** Std of the centre offset per axis, fraction of the side (default 0.10). */
  offsetStd: number;
  /** Std of the log scale factor of the radius (default 0.35). */
  scaleLogStd: number;
  /** Std of the additive per-channel color jitter (default 0.20); the color is clipped to [0, 1]. */
  colorJitterStd: number;
  /** Blur σ = blurMaxSigma·u·U(0,1) pixels (default 1.2); Gaussian, separable, edges replicated. */
  blurMaxSigma: number;
  /** Std of the additive per-pixel, per-channel noise (default 0.12); the image is clipped to [0, 1]. */
  noiseStd: number;
  /** Probability of drawing another shape than asked (default 0.06), independent of u. */
  wrongShapeProb: number;
  /** Probability of drawing another (grammar-allowed) color than asked (default 0.06), independent of u. */
  wrongColorProb: number;
}

/** The default degradation (docs/architecture.md). */
export const DEFAULT_DEGRADE: Readonly<DegradeConfig> = Object.freeze({
  offsetStd: 0.1,
  scaleLogStd: 0.35,
  colorJitterStd: 0.2,
  blurMaxSigma: 1.2,
  noiseStd: 0.12,
  wrongShapeProb: 0.06,
  wrongColorProb: 0.06,
});

/** What a degraded render actually drew. */
export interface DegradeInfo {
  /** Strength u in [0, 1]. */
  u: number;
  /** Shape drawn (differs from the prompt's when the wrong-shape event fired). */
  shape: ShapeName;
  /** Palette color the jitter started from (differs from the prompt's on a wrong-color event). */
  colorName: ColorName;
  /** Centre offset (fractions of the side). */
  offsetX: number;
  /** Centre offset (fractions of the side). */
  offsetY: number;
  /** Radius scale factor. */
  scale: number;
  /** Gaussian blur σ in pixels (0 = none). */
  blurSigma: number;
  /** Pixel noise std. */
  noiseStd: number;
}

/**
 * A degraded render of a prompt at strength u ∈ [0, 1] (docs/architecture.md). Random draws, in this order:
 * wrong-shape event (+ which), wrong-color event (+ which), offset x, offset y, log-scale,
 * color jitter r, g, b, blur fraction, then the noise of every pixel channel in HWC order.
 */
export function renderDegraded(
  prompt: string | ShapesPrompt,
  size: number,
  u: number,
  rng: DataRng,
  config: DegradeConfig = DEFAULT_DEGRADE,
): { image: Image; info: DegradeInfo } {
  if (!(u >= 0 && u <= 1)) throw new Error(`renderDegraded: strength u must be in [0, 1], got ${u}`);
  const p = toShapesPrompt(prompt);
  let shape: ShapeName = p.shape;
  if (rng.next() < config.wrongShapeProb) {
    const others = SHAPES.filter((s) => s !== p.shape);
    shape = rng.choice(others);
  }
  let colorName: ColorName = p.color;
  if (rng.next() < config.wrongColorProb) {
    const others = COLOR_NAMES.filter((c) => c !== p.color && isAllowedPair(c, p.bg));
    colorName = rng.choice(others);
  }
  const offsetX = rng.normal(0, config.offsetStd * u);
  const offsetY = rng.normal(0, config.offsetStd * u);
  const scale = Math.exp(rng.normal(0, config.scaleLogStd * u));
  const base = COLORS[colorName];
  const color: [number, number, number] = [0, 0, 0];
  for (let c = 0; c < 3; c++) color[c] = clamp01(base[c] + rng.normal(0, config.colorJitterStd * u));
  const blurSigma = config.blurMaxSigma * u * rng.next();
  const noiseStd = config.noiseStd * u;

  const image = renderShape(
    {
      shape,
      cx: 0.5 + offsetX,
      cy: 0.5 + offsetY,
      radius: SIZE_RADIUS[p.size] * scale,
      color,
      bg: BACKGROUNDS[p.bg],
    },
    size,
  );
  gaussianBlurInPlace(image, blurSigma);
  const d = image.data;
  for (let k = 0; k < d.length; k++) {
    // Always draw the noise so the stream position does not depend on u (u = 0 adds exactly 0).
    d[k] = clamp01(d[k] + noiseStd * rng.normal());
  }
  return { image, info: { u, shape, colorName, offsetX, offsetY, scale, blurSigma, noiseStd } };
}

/**
 * Separable Gaussian blur in place with standard deviation `sigma` pixels (kernel radius ⌈3σ⌉,
 * normalised, edge pixels replicated). σ below 0.05 leaves the image unchanged.
 */
export function gaussianBlurInPlace(img: Image, sigma: number): Image {
  if (!(sigma >= 0)) throw new Error(`gaussianBlurInPlace: sigma must be >= 0, got ${sigma}`);
  if (sigma < 0.05) return img;
  const { height: h, width: w, data } = img;
  const radius = Math.ceil(3 * sigma);
  const kernel = new Float64Array(2 * radius + 1);
  let sum = 0;
  for (let k = -radius; k <= radius; k++) {
    const v = Math.exp(-(k * k) / (2 * sigma * sigma));
    kernel[k + radius] = v;
    sum += v;
  }
  for (let k = 0; k < kernel.length; k++) kernel[k] /= sum;
  const tmp = new Float32Array(data.length);
  // Horizontal pass: data -> tmp.
  for (let i = 0; i < h; i++) {
    const row = i * w;
    for (let j = 0; j < w; j++) {
      let r = 0;
      let g = 0;
      let b = 0;
      for (let k = -radius; k <= radius; k++) {
        let jj = j + k;
        jj = jj < 0 ? 0 : jj >= w ? w - 1 : jj;
        const wk = kernel[k + radius];
        const o = (row + jj) * 3;
        r += wk * data[o];
        g += wk * data[o + 1];
        b += wk * data[o + 2];
      }
      const o = (row + j) * 3;
      tmp[o] = r;
      tmp[o + 1] = g;
      tmp[o + 2] = b;
    }
  }
  // Vertical pass: tmp -> data.
  for (let i = 0; i < h; i++) {
    for (let j = 0; j < w; j++) {
      let r = 0;
      let g = 0;
      let b = 0;
      for (let k = -radius; k <= radius; k++) {
        let ii = i + k;
        ii = ii < 0 ? 0 : ii >= h ? h - 1 : ii;
        const wk = kernel[k + radius];
        const o = (ii * w + j) * 3;
        r += wk * tmp[o];
        g += wk * tmp[o + 1];
        b += wk * tmp[o + 2];
      }
      const o = (i * w + j) * 3;
      data[o] = r;
      data[o + 1] = g;
      data[o + 2] = b;
    }
  }
  return img;
}

function clamp01(v: number): number {
  return v < 0 ? 0 : Math.min(v, 1);
}
