import * as tf from "@tensorflow/tfjs-core";

/** Additive bias for masked keys: large enough that exp() underflows to 0 in float32. */
const MASKED = -1e9;

/**
 * Additive attention bias `[n, 1, 1, keys]` from a key mask `[n * keys]` (1 = real token).
 * A row with no real token (the null condition) attends to all its positions uniformly instead of
 * to none: the encoder's output for the all-[PAD] prompt is then the learned null embedding.
 */
export function keyBias(mask: Float32Array, n: number, keys: number): tf.Tensor4D {
  return tf.tensor4d(keyBiasValues(mask, n, keys), [n, 1, 1, keys]);
}

/** The values of keyBias, row-major `[n, keys]`, for engines other than tfjs. */
export function keyBiasValues(mask: Float32Array, n: number, keys: number): Float32Array {
  if (mask.length !== n * keys)
    throw new Error(`keyBias: mask has ${mask.length} entries, expected ${n}x${keys}`);
  const bias = new Float32Array(n * keys);
  for (let i = 0; i < n; i++) {
    let any = false;
    for (let j = 0; j < keys; j++) if (mask[i * keys + j] > 0) any = true;
    if (!any) continue;
    for (let j = 0; j < keys; j++) bias[i * keys + j] = mask[i * keys + j] > 0 ? 0 : MASKED;
  }
  return bias;
}

/**
 * Multi-head scaled dot-product attention on already-projected rows.
 * q: `[n * queries, c]`, k and v: `[n * keys, c]`, bias `[n, 1, 1, keys]` (see keyBias).
 * Returns `[n * queries, c]`. Keys are transposed explicitly so the products are plain batched
 * matmuls without transpose flags.
 */
export function multiHeadAttention(
  q: tf.Tensor2D,
  k: tf.Tensor2D,
  v: tf.Tensor2D,
  n: number,
  queries: number,
  keys: number,
  heads: number,
  bias: tf.Tensor4D,
): tf.Tensor2D {
  const c = q.shape[1];
  if (c % heads !== 0) throw new Error(`attention: width ${c} is not divisible by ${heads} heads`);
  const d = c / heads;
  const qh = tf.reshape(tf.transpose(tf.reshape(q, [n, queries, heads, d]), [0, 2, 1, 3]), [
    n * heads,
    queries,
    d,
  ]);
  const kt = tf.reshape(tf.transpose(tf.reshape(k, [n, keys, heads, d]), [0, 2, 3, 1]), [n * heads, d, keys]);
  const vh = tf.reshape(tf.transpose(tf.reshape(v, [n, keys, heads, d]), [0, 2, 1, 3]), [n * heads, keys, d]);
  const scores = tf.add(
    tf.mul(tf.reshape(tf.matMul(qh, kt), [n, heads, queries, keys]), 1 / Math.sqrt(d)),
    bias,
  );
  const weights = tf.reshape(tf.softmax(scores), [n * heads, queries, keys]);
  const out = tf.reshape(tf.matMul(weights, vh), [n, heads, queries, d]);
  return tf.reshape(tf.transpose(out, [0, 2, 1, 3]), [n * queries, c]);
}
