import * as tf from "@tensorflow/tfjs-core";

/**
 * GroupNorm on NHWC input (tfjs has none): channels split into `groups` groups, each normalised
 * over (H, W, channels of the group), then a per-channel affine transform. The statistics are
 * folded into one scale and shift per (sample, channel), so the full-size work is three passes
 * (x², x·a, + b) instead of five.
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
  const cg = c / groups;
  const xr = tf.reshape(x, [b, h * w, groups, cg]);
  const mean = tf.mean(xr, [1, 3], true);
  const meanSq = tf.mean(tf.square(xr), [1, 3], true);
  // E[x²] − E[x]², clamped: rounding can make it slightly negative when the group is constant.
  const variance = tf.relu(tf.sub(meanSq, tf.square(mean)));
  const scale = tf.mul(tf.rsqrt(tf.add(variance, eps)), tf.reshape(gamma, [1, 1, groups, cg]));
  const shift = tf.sub(tf.reshape(beta, [1, 1, groups, cg]), tf.mul(mean, scale));
  return tf.reshape(tf.add(tf.mul(xr, scale), shift), [b, h, w, c]);
}

/** LayerNorm over the last axis. */
export function layerNorm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, eps = 1e-5): tf.Tensor {
  const axis = x.rank - 1;
  const mean = tf.mean(x, axis, true);
  const xc = tf.sub(x, mean);
  const variance = tf.mean(tf.square(xc), axis, true);
  return tf.add(tf.mul(tf.mul(xc, tf.rsqrt(tf.add(variance, eps))), gamma), beta);
}
