import * as tf from "@tensorflow/tfjs-core";

/** What every training objective returns: the scalar to minimise and named scalar metrics. */
export interface LossOutput {
  /** The loss to differentiate. */
  loss: tf.Scalar;
  /** Metrics by the reference implementations' names (`loss` included). */
  metrics: Record<string, tf.Scalar>;
}

/** Runs `fn` in tf.tidy, keeping only the returned loss and metrics. */
export function tidyLoss(fn: () => LossOutput): LossOutput {
  return tf.tidy(() => fn() as unknown as tf.TensorContainer) as unknown as LossOutput;
}

/** Disposes a loss output's tensors (the loss may also be listed among the metrics). */
export function disposeLossOutput(out: LossOutput): void {
  const seen = new Set<tf.Tensor>([out.loss, ...Object.values(out.metrics)]);
  for (const t of seen) t.dispose();
}
