import * as tf from "@tensorflow/tfjs-core";
import { assertImageBatch, type ImageBatch, imagesToTensor } from "./image-batch.js";
import { type LossOutput, tidyLoss } from "./loss-output.js";
import type { DiffusionModel } from "./model.js";
import { addNoise, drawTimesteps, latentSize, perSampleMse } from "./noising.js";
import type { Rng } from "./rng.js";

/** Preference pairs: for each prompt a preferred (winner) and a dispreferred (loser) image. */
export interface PreferenceBatch {
  /** One prompt per pair. */
  prompts: readonly string[];
  /** Preferred images x_w, [0, 1], at the model's resolution. */
  winners: ImageBatch;
  /** Dispreferred images x_l, same shape as winners. */
  losers: ImageBatch;
}

/** Options of the Diffusion-DPO loss. */
export interface DpoOptions {
  /** β, the KL-regularisation strength (the paper: 2000 at SD scale; the shapes reference: 1000). */
  beta: number;
  /**
   * α ≥ 0: adds α · mean mse_θ^w, the winners' ε-MSE (their diffusion NLL bound), to the loss — RPO's
   * likelihood term (Pang et al. 2024), which keeps DPO from lowering the winners' likelihood. Default 0.
   */
  sftWeight?: number;
  /**
   * λ ≥ 0: DPO-Positive (Pal et al. 2024). Inside the logit, the winner's ε-MSE rising above the
   * reference's is penalised: z = −β/2 · ((m − r) + λ · max(0, mse_θ^w − mse_ref^w)). Default 0.
   */
  dpoPositiveLambda?: number;
}

/** The ε predictions one DPO step compares, each `[n, h, w, c]` (pair i in row i). */
export interface DpoPredictions {
  /** Noise added to the winner (shared with the loser). */
  noise: tf.Tensor4D;
  /** ε_θ(x_t^w, t, c). */
  policyW: tf.Tensor4D;
  /** ε_θ(x_t^l, t, c). */
  policyL: tf.Tensor4D;
  /** ε_ref(x_t^w, t, c). */
  refW: tf.Tensor4D;
  /** ε_ref(x_t^l, t, c). */
  refL: tf.Tensor4D;
}

/**
 * Diffusion-DPO (Wallace et al. 2024) from given predictions, in the reference implementation's form:
 * m = mse(ε, ε_θ^w) − mse(ε, ε_θ^l), r = the same with ε_ref (mse = per-sample mean over pixels),
 * L = −mean log σ(−β/2 · (m − r)), plus the RPO and DPO-Positive terms when their weights are set.
 * Metrics: `loss`; `raw_model_loss` = ½(mean mse_θ^w + mean mse_θ^l); `ref_loss` likewise for the
 * reference; `implicit_acc` = fraction of pairs with m − r < 0, ties counting ½; `model_diff` and
 * `ref_diff` (means of m and r); `winner_gap` = mean (mse_θ^w − mse_ref^w), positive when the policy
 * fits the winners worse than the reference does.
 */
export function dpoLossFromPredictions(p: DpoPredictions, opts: DpoOptions): LossOutput {
  checkBeta(opts.beta);
  const alpha = checkWeight(opts.sftWeight, "sftWeight");
  const lambda = checkWeight(opts.dpoPositiveLambda, "dpoPositiveLambda");
  return tidyLoss(() => {
    const mseW = perSampleMse(p.policyW, p.noise);
    const mseL = perSampleMse(p.policyL, p.noise);
    // The reference is frozen: no gradient flows into it even if its variables are trainable.
    const refW = perSampleMse(p.refW, p.noise);
    const refL = perSampleMse(p.refL, p.noise);
    const modelDiff = tf.sub(mseW, mseL);
    const refDiff = tf.sub(refW, refL);
    const winnerGap = tf.sub(mseW, refW);
    const plain = tf.sub(modelDiff, refDiff);
    const margin = lambda > 0 ? tf.add(plain, tf.mul(tf.relu(winnerGap), lambda)) : plain;
    const inside = tf.mul(margin, -0.5 * opts.beta);
    // −log σ(z) = softplus(−z). tf.logSigmoid's gradient reads a tensor it does not save, which an
    // inner tidy disposes before backprop; the Softplus kernel's gradient saves its input.
    let loss = tf.mean(tf.softplus(tf.neg(inside))) as tf.Scalar;
    if (alpha > 0) loss = tf.add(loss, tf.mul(tf.mean(mseW), alpha)) as tf.Scalar;
    const acc = tf.mean(
      tf.add(tf.cast(tf.less(plain, 0), "float32"), tf.mul(tf.cast(tf.equal(plain, 0), "float32"), 0.5)),
    ) as tf.Scalar;
    return {
      loss,
      metrics: {
        loss,
        raw_model_loss: tf.mul(tf.add(tf.mean(mseW), tf.mean(mseL)), 0.5) as tf.Scalar,
        ref_loss: tf.mul(tf.add(tf.mean(refW), tf.mean(refL)), 0.5) as tf.Scalar,
        implicit_acc: acc,
        model_diff: tf.mean(modelDiff) as tf.Scalar,
        ref_diff: tf.mean(refDiff) as tf.Scalar,
        winner_gap: tf.mean(winnerGap) as tf.Scalar,
      },
    };
  });
}

/** Validates a preference batch against a model's resolution. */
export function assertPreferenceBatch(batch: PreferenceBatch, size: number, what: string): void {
  assertImageBatch(batch.winners, `${what}: winners`, size);
  assertImageBatch(batch.losers, `${what}: losers`, size);
  if (batch.winners.n !== batch.losers.n) {
    throw new Error(`${what}: ${batch.winners.n} winners but ${batch.losers.n} losers`);
  }
  if (batch.prompts.length !== batch.winners.n) {
    throw new Error(`${what}: ${batch.prompts.length} prompts for ${batch.winners.n} pairs`);
  }
}

function checkWeight(v: number | undefined, name: string): number {
  if (v === undefined) return 0;
  if (!(Number.isFinite(v) && v >= 0)) throw new Error(`DPO ${name} must be a non-negative number, got ${v}`);
  return v;
}

function checkBeta(beta: number): void {
  if (!(Number.isFinite(beta) && beta > 0))
    throw new Error(`DPO beta must be a positive number, got ${beta}`);
}

/** The random draws of Diffusion-DPO for a batch of pairs, one entry per pair (shared by winner and loser). */
export interface DpoDraws {
  /** Timestep of pair i. */
  t: number[];
  /** ε of pair i at `[i·per, (i + 1)·per)` with per = latentSize(model). */
  noise: Float32Array;
}

/** Draws DPO's randomness for n pairs from `rng`: every timestep, then the noise (dpoLoss's order). */
export function drawDpo(model: DiffusionModel, n: number, rng: Rng): DpoDraws {
  const t = drawTimesteps(rng, n, model.schedule.timesteps);
  return { t, noise: rng.normals(n * latentSize(model)) };
}

/** Diffusion-DPO of a batch of pairs with given draws (any slice of a batch with the same slice of its draws). */
export function dpoLossFromDraws(
  policy: DiffusionModel,
  reference: DiffusionModel,
  batch: PreferenceBatch,
  draws: DpoDraws,
  opts: DpoOptions,
): LossOutput {
  assertDpoInputs(policy, reference, batch, opts);
  const n = batch.winners.n;
  const t = draws.t;
  if (t.length !== n || draws.noise.length !== n * latentSize(policy)) {
    throw new Error(`dpoLoss: draws for ${t.length} pairs, batch of ${n}`);
  }
  return tidyLoss(() => {
    const xw = policy.codec.encode(imagesToTensor(batch.winners));
    const xl = policy.codec.encode(imagesToTensor(batch.losers));
    const [, h, w, c] = xw.shape;
    const noise = tf.tensor4d(draws.noise, [n, h, w, c]);
    const t2 = [...t, ...t];
    const xt = tf.concat(
      [addNoise(policy.schedule, xw, noise, t), addNoise(policy.schedule, xl, noise, t)],
      0,
    );
    const prompts = [...batch.prompts, ...batch.prompts];
    const [policyW, policyL] = tf.split(policy.predictEps(xt, t2, prompts), 2, 0) as tf.Tensor4D[];
    const [refW, refL] = tf.split(reference.predictEps(xt, t2, prompts), 2, 0) as tf.Tensor4D[];
    return dpoLossFromPredictions({ noise, policyW, policyL, refW, refL }, opts);
  });
}

/** Throws a message naming the problem unless the batch (and models) fit this loss. */
export function assertDpoInputs(
  policy: DiffusionModel,
  reference: DiffusionModel,
  batch: PreferenceBatch,
  opts: DpoOptions,
): void {
  checkBeta(opts.beta);
  if (policy.kind !== "policy" || reference.kind !== "policy")
    throw new Error("dpoLoss: expects two text-to-image policies");
  if (JSON.stringify(policy.config.unet) !== JSON.stringify(reference.config.unet)) {
    throw new Error("dpoLoss: policy and reference architectures differ");
  }
  assertPreferenceBatch(batch, policy.imageSize, "dpoLoss");
}

/**
 * Diffusion-DPO on a batch of pairs: one t ~ U[0, T) and one ε per pair, shared by winner and loser;
 * the policy's two forward passes run as one batch of 2n, and so do the frozen reference's.
 */
export function dpoLoss(
  policy: DiffusionModel,
  reference: DiffusionModel,
  batch: PreferenceBatch,
  rng: Rng,
  opts: DpoOptions,
): LossOutput {
  assertDpoInputs(policy, reference, batch, opts);
  return dpoLossFromDraws(policy, reference, batch, drawDpo(policy, batch.winners.n, rng), opts);
}
