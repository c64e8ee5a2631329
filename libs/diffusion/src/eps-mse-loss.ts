import * as tf from "@tensorflow/tfjs-core";
import { assertImageBatch, type ImageBatch, imagesToTensor } from "./image-batch.js";
import { type LossOutput, tidyLoss } from "./loss-output.js";
import type { DiffusionModel } from "./model.js";
import { addNoise, drawNoise, drawTimesteps, perSampleMse } from "./noising.js";
import type { Rng } from "./rng.js";

/** Images with their prompts (pretraining, SFT on winners). */
export interface CaptionedBatch {
  /** One prompt per image. */
  prompts: readonly string[];
  /** [0, 1] images at the model's resolution. */
  images: ImageBatch;
}

/** Options of epsMseLoss. */
export interface EpsMseOptions {
  /** Probability that a prompt is replaced by "" (the null condition), for classifier-free guidance. Default 0. */
  promptDropout?: number;
}

/** ε-prediction MSE from given predictions: mean over samples of the per-sample pixel mean. */
export function epsMseFromPredictions(pred: tf.Tensor4D, noise: tf.Tensor4D): LossOutput {
  const loss = tf.tidy(() => tf.mean(perSampleMse(pred, noise)) as tf.Scalar);
  return { loss, metrics: { loss } };
}

/**
 * The denoising objective E‖ε − ε_θ(√ᾱ_t x₀ + √(1 − ᾱ_t) ε, t, c)‖² with t ~ U[0, T) and ε ~ N(0, I)
 * drawn from `rng`. Pretraining uses promptDropout > 0; SFT on winners passes the winners.
 */
export function epsMseLoss(
  model: DiffusionModel,
  batch: CaptionedBatch,
  rng: Rng,
  opts: EpsMseOptions = {},
): LossOutput {
  if (model.kind !== "policy") throw new Error("epsMseLoss: expects a text-to-image policy");
  assertImageBatch(batch.images, "epsMseLoss: images", model.imageSize);
  if (batch.prompts.length !== batch.images.n) {
    throw new Error(`epsMseLoss: ${batch.prompts.length} prompts for ${batch.images.n} images`);
  }
  const p = opts.promptDropout ?? 0;
  if (!(p >= 0 && p <= 1)) throw new Error(`promptDropout must be in [0, 1], got ${p}`);
  const n = batch.images.n;
  const prompts = batch.prompts.map((c) => (p > 0 && rng.next() < p ? "" : c));
  const t = drawTimesteps(rng, n, model.schedule.timesteps);
  return tidyLoss(() => {
    const x0 = model.codec.encode(imagesToTensor(batch.images));
    const [, h, w, c] = x0.shape;
    const noise = drawNoise(rng, [n, h, w, c]);
    const pred = model.predictEps(addNoise(model.schedule, x0, noise, t), t, prompts);
    return epsMseFromPredictions(pred, noise);
  });
}
