import * as tf from "@tensorflow/tfjs-core";

/**
 * A batch of RGB images as the library's public API exchanges them: NHWC float32 in [0, 1],
 * `data.length === n * height * width * 3` (the same layout as @idpo/data's ImageBatch).
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

/** Throws a message naming `what` unless `b` is a well-formed batch (optionally of side `size`). */
export function assertImageBatch(b: ImageBatch, what = "images", size?: number): void {
  if (b === null || typeof b !== "object") throw new Error(`${what}: expected an ImageBatch object`);
  for (const k of ["n", "height", "width"] as const) {
    if (!Number.isInteger(b[k]) || b[k] < 0)
      throw new Error(`${what}: ${k} must be a non-negative integer, got ${b[k]}`);
  }
  if (b.channels !== 3) throw new Error(`${what}: channels must be 3 (RGB), got ${b.channels}`);
  if (!(b.data instanceof Float32Array)) throw new Error(`${what}: data must be a Float32Array`);
  const want = b.n * b.height * b.width * 3;
  if (b.data.length !== want) {
    throw new Error(
      `${what}: data has ${b.data.length} values, expected ${want} for ${b.n}x${b.height}x${b.width}x3`,
    );
  }
  if (size !== undefined && (b.height !== size || b.width !== size)) {
    throw new Error(`${what}: images are ${b.height}x${b.width}, the model works on ${size}x${size}`);
  }
}

/** [0, 1] images → model-space tensor `[n, H, W, 3]` in [-1, 1]. The caller owns the result. */
export function imagesToTensor(b: ImageBatch): tf.Tensor4D {
  assertImageBatch(b);
  return tf.tidy(() => tf.sub(tf.mul(tf.tensor4d(b.data, [b.n, b.height, b.width, 3]), 2), 1));
}

/** Model-space tensor in [-1, 1] → [0, 1] images (values clipped). */
export async function tensorToImages(x: tf.Tensor4D): Promise<ImageBatch> {
  const [n, height, width, c] = x.shape;
  if (c !== 3) throw new Error(`tensorToImages: expected 3 channels, got ${c}`);
  const y = tf.tidy(() => tf.clipByValue(tf.add(tf.mul(x, 0.5), 0.5), 0, 1));
  const data = (await y.data()) as Float32Array;
  y.dispose();
  return { n, height, width, channels: 3, data: new Float32Array(data) };
}

/** Images i..j (exclusive) of a batch, sharing no memory with it. */
export function sliceImages(b: ImageBatch, start: number, end: number): ImageBatch {
  const per = b.height * b.width * 3;
  return {
    n: end - start,
    height: b.height,
    width: b.width,
    channels: 3,
    data: b.data.slice(start * per, end * per),
  };
}

/** Concatenates batches of the same image size. */
export function concatImages(parts: readonly ImageBatch[]): ImageBatch {
  if (parts.length === 0) throw new Error("concatImages: nothing to concatenate");
  const { height, width } = parts[0];
  let n = 0;
  for (const p of parts) {
    if (p.height !== height || p.width !== width) throw new Error("concatImages: image sizes differ");
    n += p.n;
  }
  const data = new Float32Array(n * height * width * 3);
  let off = 0;
  for (const p of parts) {
    data.set(p.data, off);
    off += p.data.length;
  }
  return { n, height, width, channels: 3, data };
}
