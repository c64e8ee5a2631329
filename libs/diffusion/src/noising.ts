import * as tf from "@tensorflow/tfjs-core";
import type { DiffusionModel } from "./model.js";
import type { NoiseSchedule } from "./noise-schedule.js";
import type { Rng } from "./rng.js";

/** n timesteps uniform in [0, T). */
export function drawTimesteps(rng: Rng, n: number, T: number): number[] {
  const t: number[] = [];
  for (let i = 0; i < n; i++) t.push(rng.int(T));
  return t;
}

/** Values of one example's latent `[S, S, C]`, i.e. of one example's ε. */
export function latentSize(model: DiffusionModel): number {
  const s = model.config.unet.imageSize;
  return s * s * model.codec.channels;
}

/** Standard normal noise `[n, h, w, c]` from the host RNG. */
export function drawNoise(rng: Rng, shape: [number, number, number, number]): tf.Tensor4D {
  return tf.tensor4d(rng.normals(shape[0] * shape[1] * shape[2] * shape[3]), shape);
}

/** The forward process q(x_t | x_0): √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε, with a timestep per sample. */
export function addNoise(
  schedule: NoiseSchedule,
  x0: tf.Tensor4D,
  eps: tf.Tensor4D,
  t: ArrayLike<number>,
): tf.Tensor4D {
  const n = x0.shape[0];
  if (t.length !== n) throw new Error(`addNoise: ${t.length} timesteps for a batch of ${n}`);
  if (eps.shape.join(",") !== x0.shape.join(",")) {
    throw new Error(`addNoise: noise shape [${eps.shape}] differs from x0 shape [${x0.shape}]`);
  }
  const a = new Float32Array(n);
  const b = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const ab = schedule.alphasCumprod[t[i]];
    if (ab === undefined) throw new Error(`addNoise: timestep ${t[i]} outside [0, ${schedule.timesteps})`);
    a[i] = Math.sqrt(ab);
    b[i] = Math.sqrt(1 - ab);
  }
  return tf.tidy(() =>
    tf.add(tf.mul(x0, tf.tensor4d(a, [n, 1, 1, 1])), tf.mul(eps, tf.tensor4d(b, [n, 1, 1, 1]))),
  );
}

/** Per-sample mean squared error over all pixels and channels: `[n]`. */
export function perSampleMse(pred: tf.Tensor4D, target: tf.Tensor4D): tf.Tensor1D {
  if (pred.shape.join(",") !== target.shape.join(",")) {
    throw new Error(`perSampleMse: prediction [${pred.shape}] and target [${target.shape}] differ`);
  }
  return tf.mean(tf.square(tf.sub(pred, target)), [1, 2, 3]) as tf.Tensor1D;
}
