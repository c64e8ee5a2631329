import { assertImage, createImage, type Image } from "./image.js";

/**
 * Resampling filter: "area" averages the source pixels each output pixel covers (exact fractional
 * overlap; the right filter for downscaling), "bilinear" interpolates at pixel centres (half-pixel
 * convention, edges clamped), "auto" = area when shrinking an axis, bilinear when enlarging it.
 */
export type ResizeMode = "area" | "bilinear" | "auto";

/** The largest centred square crop (zero-copy when the image is already square). */
export function centerCrop(img: Image): Image {
  assertImage(img, "centerCrop");
  const side = Math.min(img.height, img.width);
  return cropImage(img, Math.floor((img.height - side) / 2), Math.floor((img.width - side) / 2), side, side);
}

/** Copies the rectangle starting at (top, left) of the given size. */
export function cropImage(img: Image, top: number, left: number, height: number, width: number): Image {
  if (top === 0 && left === 0 && height === img.height && width === img.width) return img;
  if (
    !Number.isInteger(top) ||
    !Number.isInteger(left) ||
    top < 0 ||
    left < 0 ||
    !Number.isInteger(height) ||
    !Number.isInteger(width) ||
    height <= 0 ||
    width <= 0 ||
    top + height > img.height ||
    left + width > img.width
  ) {
    throw new Error(
      `cropImage: rectangle ${top},${left} ${height}x${width} is outside the ${img.height}x${img.width} image`,
    );
  }
  const out = createImage(height, width);
  for (let i = 0; i < height; i++) {
    const src = ((top + i) * img.width + left) * 3;
    out.data.set(img.data.subarray(src, src + width * 3), i * width * 3);
  }
  return out;
}

/** Per-output-index source taps (flattened: start offsets into idx/weight arrays). */
interface Taps {
  start: Int32Array;
  idx: Int32Array;
  weight: Float64Array;
}

function areaTaps(src: number, dst: number): Taps {
  const scale = src / dst;
  const start = new Int32Array(dst + 1);
  const idx: number[] = [];
  const weight: number[] = [];
  for (let o = 0; o < dst; o++) {
    start[o] = idx.length;
    const a = o * scale;
    const b = (o + 1) * scale;
    for (let s = Math.floor(a); s < Math.min(src, Math.ceil(b)); s++) {
      const overlap = Math.min(b, s + 1) - Math.max(a, s);
      if (overlap > 0) {
        idx.push(s);
        weight.push(overlap / scale);
      }
    }
  }
  start[dst] = idx.length;
  return { start, idx: Int32Array.from(idx), weight: Float64Array.from(weight) };
}

function bilinearTaps(src: number, dst: number): Taps {
  const scale = src / dst;
  const start = new Int32Array(dst + 1);
  const idx = new Int32Array(2 * dst);
  const weight = new Float64Array(2 * dst);
  for (let o = 0; o < dst; o++) {
    start[o] = 2 * o;
    let x = (o + 0.5) * scale - 0.5;
    if (x < 0) x = 0;
    if (x > src - 1) x = src - 1;
    const x0 = Math.floor(x);
    const x1 = x0 + 1 < src ? x0 + 1 : x0;
    const f = x - x0;
    idx[2 * o] = x0;
    weight[2 * o] = 1 - f;
    idx[2 * o + 1] = x1;
    weight[2 * o + 1] = f;
  }
  start[dst] = 2 * dst;
  return { start, idx, weight };
}

function taps(src: number, dst: number, mode: ResizeMode): Taps {
  const m = mode === "auto" ? (dst < src ? "area" : "bilinear") : mode;
  return m === "area" ? areaTaps(src, dst) : bilinearTaps(src, dst);
}

/** Resizes to height×width with the given filter (separable: columns, then rows). */
export function resizeImage(img: Image, height: number, width: number, mode: ResizeMode = "auto"): Image {
  assertImage(img, "resizeImage");
  if (!Number.isInteger(height) || !Number.isInteger(width) || height <= 0 || width <= 0) {
    throw new Error(`resizeImage: target size must be positive integers, got ${height}x${width}`);
  }
  if (mode !== "area" && mode !== "bilinear" && mode !== "auto")
    throw new Error(`resizeImage: unknown mode ${mode}`);
  if (height === img.height && width === img.width) return { height, width, data: img.data.slice() };
  const tx = taps(img.width, width, mode);
  const ty = taps(img.height, height, mode);
  const sh = img.height;
  const src = img.data;
  // Horizontal pass: sh × width.
  const mid = new Float32Array(sh * width * 3);
  for (let i = 0; i < sh; i++) {
    const row = i * img.width;
    for (let o = 0; o < width; o++) {
      let r = 0;
      let g = 0;
      let b = 0;
      for (let t = tx.start[o]; t < tx.start[o + 1]; t++) {
        const k = (row + tx.idx[t]) * 3;
        const w = tx.weight[t];
        r += w * src[k];
        g += w * src[k + 1];
        b += w * src[k + 2];
      }
      const q = (i * width + o) * 3;
      mid[q] = r;
      mid[q + 1] = g;
      mid[q + 2] = b;
    }
  }
  const out = createImage(height, width);
  const d = out.data;
  for (let o = 0; o < height; o++) {
    for (let j = 0; j < width; j++) {
      let r = 0;
      let g = 0;
      let b = 0;
      for (let t = ty.start[o]; t < ty.start[o + 1]; t++) {
        const k = (ty.idx[t] * width + j) * 3;
        const w = ty.weight[t];
        r += w * mid[k];
        g += w * mid[k + 1];
        b += w * mid[k + 2];
      }
      const q = (o * width + j) * 3;
      d[q] = r;
      d[q + 1] = g;
      d[q + 2] = b;
    }
  }
  return out;
}

/** Centre-crops to a square and resizes to size×size (the Pick-a-Pic preprocessing). */
export function centerCropResize(img: Image, size: number, mode: ResizeMode = "auto"): Image {
  return resizeImage(centerCrop(img), size, size, mode);
}

/** Nearest-neighbour enlargement by an integer factor (for previews of tiny images). */
export function upscaleNearest(img: Image, factor: number): Image {
  if (!Number.isInteger(factor) || factor < 1)
    throw new Error(`upscaleNearest: factor must be a positive integer, got ${factor}`);
  if (factor === 1) return img;
  const out = createImage(img.height * factor, img.width * factor);
  const ow = img.width * factor;
  for (let i = 0; i < out.height; i++) {
    const si = Math.floor(i / factor);
    for (let j = 0; j < ow; j++) {
      const s = (si * img.width + Math.floor(j / factor)) * 3;
      const q = (i * ow + j) * 3;
      out.data[q] = img.data[s];
      out.data[q + 1] = img.data[s + 1];
      out.data[q + 2] = img.data[s + 2];
    }
  }
  return out;
}
