import zlib from "node:zlib";
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

/** What a PNG's IHDR chunk declares, read without decoding anything. */
export interface PngHeader {
  width: number;
  height: number;
  /** Bits per channel (1, 2, 4, 8 or 16). */
  bitDepth: number;
  /** 0 gray, 2 RGB, 3 palette, 4 gray + alpha, 6 RGBA. */
  colorType: number;
  /** Adam7 interlacing. */
  interlaced: boolean;
}

const PNG_SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];
/** Channels per pixel of each PNG color type. */
const PNG_CHANNELS: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };

/**
 * Reads a PNG's signature and IHDR chunk (its first 33 bytes): the size an image declares, known before
 * a single byte is inflated, so that a small file declaring a huge image can be refused cheaply. Throws
 * `readPngHeader: ...` on anything that is not a PNG header.
 */
export function readPngHeader(bytes: Uint8Array): PngHeader {
  if (bytes.length < 33 || PNG_SIGNATURE.some((b, i) => bytes[i] !== b)) {
    throw new Error("readPngHeader: not a PNG (no PNG signature)");
  }
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (v.getUint32(8) !== 13 || String.fromCharCode(...bytes.subarray(12, 16)) !== "IHDR") {
    throw new Error("readPngHeader: not a PNG (the first chunk is not a 13-byte IHDR)");
  }
  const h: PngHeader = {
    width: v.getUint32(16),
    height: v.getUint32(20),
    bitDepth: bytes[24],
    colorType: bytes[25],
    interlaced: bytes[28] === 1,
  };
  if (h.width === 0 || h.height === 0) throw new Error(`readPngHeader: empty image ${h.width}x${h.height}`);
  if (PNG_CHANNELS[h.colorType] === undefined || ![1, 2, 4, 8, 16].includes(h.bitDepth)) {
    throw new Error(`readPngHeader: color type ${h.colorType} with bit depth ${h.bitDepth} is not PNG`);
  }
  return h;
}

/**
 * Refuses an interlaced PNG whose image data inflates to more than its header allows (the decoder bounds
 * the inflation of non-interlaced images itself, not of interlaced ones): Adam7 adds at most one filter
 * byte and one partial byte per row of each of its 7 passes to the raw size.
 */
function checkInterlacedSize(bytes: Uint8Array, h: PngHeader): void {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const idat: Uint8Array[] = [];
  for (let at = 8; at + 12 <= bytes.length; ) {
    const length = v.getUint32(at);
    const type = String.fromCharCode(...bytes.subarray(at + 4, at + 8));
    if (at + 12 + length > bytes.length) break;
    if (type === "IDAT") idat.push(bytes.subarray(at + 8, at + 8 + length));
    if (type === "IEND") break;
    at += 12 + length;
  }
  const rowBytes = Math.ceil((h.width * PNG_CHANNELS[h.colorType] * h.bitDepth) / 8);
  const bound = rowBytes * h.height + 2 * 7 * (h.height + 8);
  try {
    zlib.inflateSync(Buffer.concat(idat), { maxOutputLength: bound });
  } catch (e) {
    throw new Error(
      `decodePng: interlaced image data inflates past its ${h.width}x${h.height} size (${(e as Error).message})`,
    );
  }
}

/**
 * Decodes PNG bytes (any bit depth and color type: gray, palette, RGB, with or without alpha; 16-bit
 * channels are reduced to 8 bits) to a float RGB image. Alpha is composited onto black: each color
 * channel is multiplied by alpha, so a fully transparent pixel is black. Throws a clear error on bytes
 * that are not a valid PNG. Callers taking PNGs from the network check {@link readPngHeader}'s size first.
 */
export function decodePng(bytes: Uint8Array): Image {
  let png: { width: number; height: number; data: Buffer };
  try {
    const h = readPngHeader(bytes);
    if (h.interlaced) checkInterlacedSize(bytes, h);
    png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  } catch (e) {
    const msg = (e as Error).message;
    throw new Error(msg.startsWith("decodePng:") ? msg : `decodePng: not a valid PNG (${msg})`);
  }
  const { width, height, data } = png;
  const img = createImage(height, width);
  const o = img.data;
  for (let p = 0, q = 0; p < width * height; p++, q += 4) {
    const a = data[q + 3] / 255;
    o[p * 3] = (data[q] / 255) * a;
    o[p * 3 + 1] = (data[q + 1] / 255) * a;
    o[p * 3 + 2] = (data[q + 2] / 255) * a;
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
