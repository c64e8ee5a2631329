import jpeg from "jpeg-js";
import pngjs from "pngjs";
import { assertImage, createImage, type Image } from "./image.js";

const { PNG } = pngjs;

/**
 * Encodes an image as an 8-bit RGB PNG (values clamped to [0, 1], rounded to the nearest level).
 * Returns the PNG file bytes.
 */
export function encodePng(img: Image): Buffer {
  assertImage(img, "encodePng");
  const png = new PNG({
    width: img.width,
    height: img.height,
    colorType: 2,
    inputColorType: 2,
    inputHasAlpha: false,
  });
  const d = img.data;
  const out = Buffer.alloc(d.length);
  for (let k = 0; k < d.length; k++) {
    const v = d[k] * 255 + 0.5;
    out[k] = v >= 255 ? 255 : Math.max(v, 0);
  }
  png.data = out;
  return PNG.sync.write(png, { colorType: 2, inputColorType: 2, inputHasAlpha: false });
}

/**
 * Decodes PNG bytes (any bit depth and color type: gray, palette, RGB, with or without alpha) to a
 * float RGB image. Alpha is ignored (the color channels are taken as stored). Throws a clear error
 * on bytes that are not a valid PNG.
 */
export function decodePng(bytes: Uint8Array): Image {
  let png: { width: number; height: number; data: Buffer };
  try {
    png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  } catch (e) {
    throw new Error(`decodePng: not a valid PNG (${(e as Error).message})`);
  }
  const { width, height, data } = png;
  const img = createImage(height, width);
  const o = img.data;
  for (let p = 0, q = 0; p < width * height; p++, q += 4) {
    o[p * 3] = data[q] / 255;
    o[p * 3 + 1] = data[q + 1] / 255;
    o[p * 3 + 2] = data[q + 2] / 255;
  }
  return img;
}

/** Limits applied while decoding untrusted JPEGs. */
export interface JpegLimits {
  /** Refuse images above this many megapixels (default 64). */
  maxResolutionInMP?: number;
  /** Refuse decodes needing more memory than this (default 512 MiB). */
  maxMemoryUsageInMB?: number;
}

/**
 * Decodes JPEG bytes (baseline or progressive, gray or color; CMYK converted by jpeg-js) to a float
 * RGB image. Throws `decodeJpeg: ...` on undecodable bytes or images over the limits.
 */
export function decodeJpeg(bytes: Uint8Array, limits: JpegLimits = {}): Image {
  let raw: { width: number; height: number; data: Uint8Array };
  try {
    raw = jpeg.decode(bytes, {
      useTArray: true,
      formatAsRGBA: false,
      maxResolutionInMP: limits.maxResolutionInMP ?? 64,
      maxMemoryUsageInMB: limits.maxMemoryUsageInMB ?? 512,
    });
  } catch (e) {
    throw new Error(`decodeJpeg: ${(e as Error).message ?? e}`);
  }
  const { width, height, data } = raw;
  if (!(width > 0 && height > 0) || data.length !== width * height * 3) {
    throw new Error(`decodeJpeg: decoder returned ${width}x${height} with ${data.length} bytes`);
  }
  const img = createImage(height, width);
  const o = img.data;
  for (let k = 0; k < data.length; k++) o[k] = data[k] / 255;
  return img;
}

/** Encodes an image as a baseline JPEG (quality 1..100, default 90); for fixtures and previews. */
export function encodeJpeg(img: Image, quality = 90): Buffer {
  assertImage(img, "encodeJpeg");
  const { width, height, data } = img;
  const rgba = Buffer.alloc(width * height * 4);
  for (let p = 0; p < width * height; p++) {
    for (let c = 0; c < 3; c++) {
      const v = data[p * 3 + c] * 255 + 0.5;
      rgba[p * 4 + c] = v >= 255 ? 255 : Math.max(v, 0);
    }
    rgba[p * 4 + 3] = 255;
  }
  return jpeg.encode({ width, height, data: rgba }, quality).data;
}
