import * as tf from "@tensorflow/tfjs-core";

/**
 * GroupNorm on NHWC input (tfjs has none): channels split into `groups` groups, each normalised
 * over (H, W, channels of the group), then a per-channel affine transform.
 */
export function groupNorm(
  x: tf.Tensor4D,
  groups: number,
  gamma: tf.Tensor,
  beta: tf.Tensor,
  eps = 1e-5,
): tf.Tensor4D {
  const [b, h, w, c] = x.shape;
  if (c % groups !== 0) throw new Error(`groupNorm: ${c} channels are not divisible by ${groups} groups`);
  const xr = tf.reshape(x, [b, h * w, groups, c / groups]);
  const mean = tf.mean(xr, [1, 3], true);
  const xc = tf.sub(xr, mean);
  const variance = tf.mean(tf.square(xc), [1, 3], true);
  const y = tf.reshape(tf.mul(xc, tf.rsqrt(tf.add(variance, eps))), [b, h, w, c]);
  return tf.add(tf.mul(y, gamma), beta);
}

/** LayerNorm over the last axis. */
export function layerNorm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, eps = 1e-5): tf.Tensor {
  const axis = x.rank - 1;
  const mean = tf.mean(x, axis, true);
  const xc = tf.sub(x, mean);
  const variance = tf.mean(tf.square(xc), axis, true);
  return tf.add(tf.mul(tf.mul(xc, tf.rsqrt(tf.add(variance, eps))), gamma), beta);
}
