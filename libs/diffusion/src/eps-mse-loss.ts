import * as tf from "@tensorflow/tfjs-core";
import { assertImageBatch, type ImageBatch, imagesToTensor } from "./image-batch.js";
import { type LossOutput, tidyLoss } from "./loss-output.js";
import type { DiffusionModel } from "./model.js";
import { addNoise, drawTimesteps, latentSize, perSampleMse } from "./noising.js";
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

/** The random draws of ε-MSE for a batch, one entry per example, made before any tensor work. */
export interface EpsMseDraws {
  /** Whether example i's prompt is replaced by "" (prompt dropout). */
  dropPrompt: boolean[];
  /** Timestep of example i. */
  t: number[];
  /** ε, example i at `[i·per, (i + 1)·per)` with per = latentSize(model). */
  noise: Float32Array;
}

/**
 * Draws ε-MSE's randomness for n examples from `rng`: every dropout coin, then every timestep, then
 * the noise (the order epsMseLoss has always used, so a seed keeps its meaning).
 */
export function drawEpsMse(
  model: DiffusionModel,
  n: number,
  rng: Rng,
  opts: EpsMseOptions = {},
): EpsMseDraws {
  const p = opts.promptDropout ?? 0;
  if (!(p >= 0 && p <= 1)) throw new Error(`promptDropout must be in [0, 1], got ${p}`);
  const dropPrompt = Array.from({ length: n }, () => p > 0 && rng.next() < p);
  const t = drawTimesteps(rng, n, model.schedule.timesteps);
  return { dropPrompt, t, noise: rng.normals(n * latentSize(model)) };
}

/** ε-MSE of a batch with given draws (any slice of a batch with the same slice of its draws). */
export function epsMseLossFromDraws(
  model: DiffusionModel,
  batch: CaptionedBatch,
  draws: EpsMseDraws,
): LossOutput {
  assertCaptionedBatch(model, batch);
  const n = batch.images.n;
  if (draws.t.length !== n || draws.dropPrompt.length !== n || draws.noise.length !== n * latentSize(model)) {
    throw new Error(`epsMseLoss: draws for ${draws.t.length} examples, batch of ${n}`);
  }
  const prompts = batch.prompts.map((c, i) => (draws.dropPrompt[i] ? "" : c));
  return tidyLoss(() => {
    const x0 = model.codec.encode(imagesToTensor(batch.images));
    const [, h, w, c] = x0.shape;
    const noise = tf.tensor4d(draws.noise, [n, h, w, c]);
    const pred = model.predictEps(addNoise(model.schedule, x0, noise, draws.t), draws.t, prompts);
    return epsMseFromPredictions(pred, noise);
  });
}

/** Throws a message naming the problem unless the batch (and models) fit this loss. */
export function assertCaptionedBatch(model: DiffusionModel, batch: CaptionedBatch): void {
  if (model.kind !== "policy") throw new Error("epsMseLoss: expects a text-to-image policy");
  assertImageBatch(batch.images, "epsMseLoss: images", model.imageSize);
  if (batch.prompts.length !== batch.images.n) {
    throw new Error(`epsMseLoss: ${batch.prompts.length} prompts for ${batch.images.n} images`);
  }
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
  assertCaptionedBatch(model, batch);
  return epsMseLossFromDraws(model, batch, drawEpsMse(model, batch.images.n, rng, opts));
}
