import * as tf from "@tensorflow/tfjs-core";

/** Global L2 norm of a set of gradients (read back to the host). */
export function globalNorm(grads: Iterable<tf.Tensor>): number {
  const list = [...grads];
  if (list.length === 0) return 0;
  const sq = tf.tidy(() => tf.addN(list.map((g) => tf.sum(tf.square(g)))));
  const v = sq.dataSync()[0];
  sq.dispose();
  return Math.sqrt(v);
}

/**
 * Scales gradients so their global norm is at most maxNorm (PyTorch's clip_grad_norm_: factor
 * maxNorm / (norm + 1e-6), only when below 1). Returns new tensors when scaled, else the inputs,
 * and the norm before clipping. maxNorm ≤ 0 or Infinity disables clipping.
 */
export function clipByGlobalNorm(
  grads: ReadonlyMap<string, tf.Tensor>,
  maxNorm: number,
): { grads: Map<string, tf.Tensor>; norm: number; scaled: boolean } {
  const norm = globalNorm(grads.values());
  const out = new Map(grads);
  if (!(maxNorm > 0) || !Number.isFinite(maxNorm)) return { grads: out, norm, scaled: false };
  const factor = maxNorm / (norm + 1e-6);
  if (factor >= 1) return { grads: out, norm, scaled: false };
  for (const [k, g] of grads) out.set(k, tf.mul(g, factor));
  return { grads: out, norm, scaled: true };
}
