import * as tf from "@tensorflow/tfjs-core";

/**
 * Sinusoidal timestep embedding `[n, dim]` (the DDPM/guided-diffusion form: cos half then sin
 * half, frequencies 10000^(−i/half)). Computed in JS: timesteps are known on the host.
 */
export function timestepEmbedding(t: ArrayLike<number>, dim: number, maxPeriod = 10000): tf.Tensor2D {
  return tf.tensor2d(timestepEmbeddingValues(t, dim, maxPeriod), [t.length, dim]);
}

/** The values of timestepEmbedding, row-major `[n, dim]`, for engines other than tfjs. */
export function timestepEmbeddingValues(t: ArrayLike<number>, dim: number, maxPeriod = 10000): Float32Array {
  if (dim % 2 !== 0) throw new Error(`timestepEmbedding: dim must be even, got ${dim}`);
  const half = dim / 2;
  const n = t.length;
  const out = new Float32Array(n * dim);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < half; j++) {
      const arg = t[i] * Math.exp((-Math.log(maxPeriod) * j) / half);
      out[i * dim + j] = Math.cos(arg);
      out[i * dim + half + j] = Math.sin(arg);
    }
  }
  return out;
}
