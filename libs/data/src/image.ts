/**
 * One RGB image in memory: HWC float32 in [0, 1], `data.length === height * width * 3`.
 * The layout every package shares (the diffusion lib produces and consumes the same).
 */
export interface Image {
  /** Rows. */
  height: number;
  /** Columns. */
  width: number;
  /** Row-major HWC, RGB, values in [0, 1]. */
  data: Float32Array;
}

/**
 * A batch of RGB images: NHWC float32 in [0, 1], `data.length === n * height * width * 3`.
 * Compatible with the diffusion lib's `ImageBatch`.
 */
export interface ImageBatch {
  /** Number of images. */
  n: number;
  /** Rows per image. */
  height: number;
  /** Columns per image. */
  width: number;
  /** Always 3 (RGB). */
  channels: 3;
  /** Row-major NHWC, RGB, values in [0, 1]. */
  data: Float32Array;
}

/** Allocates a black (all-zero) image. */
export function createImage(height: number, width: number): Image {
  checkDims(height, width, "createImage");
  return { height, width, data: new Float32Array(height * width * 3) };
}

/** Allocates an image filled with one RGB color. */
export function solidImage(height: number, width: number, rgb: readonly [number, number, number]): Image {
  const img = createImage(height, width);
  const d = img.data;
  for (let p = 0; p < d.length; p += 3) {
    d[p] = rgb[0];
    d[p + 1] = rgb[1];
    d[p + 2] = rgb[2];
  }
  return img;
}

/**
 * Throws a message naming `what` unless `img` is a well-formed RGB image
 * (positive integer sizes, a Float32Array of the right length).
 */
export function assertImage(img: Image, what = "image"): void {
  if (img === null || typeof img !== "object") throw new Error(`${what}: expected an image object`);
  checkDims(img.height, img.width, what);
  if (!(img.data instanceof Float32Array)) throw new Error(`${what}: data must be a Float32Array`);
  const want = img.height * img.width * 3;
  if (img.data.length !== want) {
    throw new Error(
      `${what}: data has ${img.data.length} values, expected ${want} for ${img.height}x${img.width}x3 (HWC RGB)`,
    );
  }
}

/** Throws unless `batch` is a well-formed NHWC RGB batch. */
export function assertImageBatch(batch: ImageBatch, what = "batch"): void {
  if (batch === null || typeof batch !== "object") throw new Error(`${what}: expected an image batch object`);
  if (!Number.isInteger(batch.n) || batch.n < 0) throw new Error(`${what}: n must be a non-negative integer`);
  checkDims(batch.height, batch.width, what);
  if (batch.channels !== 3) throw new Error(`${what}: channels must be 3 (RGB), got ${batch.channels}`);
  if (!(batch.data instanceof Float32Array)) throw new Error(`${what}: data must be a Float32Array`);
  const want = batch.n * batch.height * batch.width * 3;
  if (batch.data.length !== want) {
    throw new Error(
      `${what}: data has ${batch.data.length} values, expected ${want} for ${batch.n}x${batch.height}x${batch.width}x3`,
    );
  }
}

/** Image `i` of a batch as a zero-copy view (shares memory with the batch). */
export function batchImage(batch: ImageBatch, i: number): Image {
  if (!Number.isInteger(i) || i < 0 || i >= batch.n) {
    throw new Error(`batchImage: index ${i} out of range for a batch of ${batch.n}`);
  }
  const len = batch.height * batch.width * 3;
  return { height: batch.height, width: batch.width, data: batch.data.subarray(i * len, (i + 1) * len) };
}

/** Copies same-sized images into one new NHWC batch. */
export function stackImages(images: readonly Image[]): ImageBatch {
  if (images.length === 0) throw new Error("stackImages: no images given");
  const { height, width } = images[0];
  const len = height * width * 3;
  const data = new Float32Array(images.length * len);
  for (let i = 0; i < images.length; i++) {
    const img = images[i];
    assertImage(img, `stackImages: image ${i}`);
    if (img.height !== height || img.width !== width) {
      throw new Error(
        `stackImages: image ${i} is ${img.height}x${img.width}, expected ${height}x${width} like image 0`,
      );
    }
    data.set(img.data, i * len);
  }
  return { n: images.length, height, width, channels: 3, data };
}

/** Splits a batch into zero-copy per-image views. */
export function unstackImages(batch: ImageBatch): Image[] {
  const out: Image[] = [];
  for (let i = 0; i < batch.n; i++) out.push(batchImage(batch, i));
  return out;
}

/**
 * Quantises an image to 8-bit RGB (round half up, clamped to [0, 255]);
 * writes into `out` when given (length height*width*3).
 */
export function imageToRgb8(img: Image, out?: Uint8Array): Uint8Array {
  const d = img.data;
  const o = out ?? new Uint8Array(d.length);
  if (o.length !== d.length) throw new Error(`imageToRgb8: output has ${o.length} bytes, need ${d.length}`);
  for (let k = 0; k < d.length; k++) {
    const v = d[k] * 255 + 0.5;
    // NaN fails both comparisons and ends up 0 through the typed-array conversion.
    o[k] = v >= 255 ? 255 : Math.max(v, 0);
  }
  return o;
}

/** Expands 8-bit RGB (HWC) to a float image in [0, 1]. */
export function rgb8ToImage(rgb: Uint8Array, height: number, width: number): Image {
  checkDims(height, width, "rgb8ToImage");
  if (rgb.length !== height * width * 3) {
    throw new Error(
      `rgb8ToImage: got ${rgb.length} bytes, expected ${height * width * 3} for ${height}x${width}x3`,
    );
  }
  const data = new Float32Array(rgb.length);
  for (let k = 0; k < rgb.length; k++) data[k] = rgb[k] / 255;
  return { height, width, data };
}

/** Rounds an image in place to the nearest 8-bit level, so it equals what an 8-bit store reads back. */
export function quantizeImageInPlace(img: Image): Image {
  const d = img.data;
  for (let k = 0; k < d.length; k++) {
    const v = d[k] * 255 + 0.5;
    const q = v >= 255 ? 255 : v > 0 ? Math.floor(v) : 0;
    d[k] = q / 255;
  }
  return img;
}

/** Clamps every value of an image into [0, 1] in place. */
export function clampImageInPlace(img: Image): Image {
  const d = img.data;
  for (let k = 0; k < d.length; k++) {
    const v = d[k];
    d[k] = v < 0 ? 0 : Math.min(v, 1);
  }
  return img;
}

function checkDims(height: number, width: number, what: string): void {
  if (!Number.isInteger(height) || height <= 0 || !Number.isInteger(width) || width <= 0) {
    throw new Error(`${what}: height and width must be positive integers, got ${height}x${width}`);
  }
}
