import { type DpoOptions, dpoLoss, type PreferenceBatch } from "./dpo-loss.js";
import { type CaptionedBatch, epsMseLoss } from "./eps-mse-loss.js";
import { type ImproverLossOptions, improverLoss } from "./improver-loss.js";
import type { DiffusionModel } from "./model.js";
import { type SpinBatch, spinLoss } from "./spin-loss.js";
import type { Objective } from "./trainer.js";

/** Default prompt dropout of pretraining and SFT: 10 % null prompts keep classifier-free guidance usable. */
export const DEFAULT_PROMPT_DROPOUT = 0.1;

/** Base-model pretraining on images + prompts: ε-MSE with prompt dropout. */
export function pretrainObjective(
  model: DiffusionModel,
  promptDropout = DEFAULT_PROMPT_DROPOUT,
): Objective<CaptionedBatch> {
  return (batch, rng) => epsMseLoss(model, batch, rng, { promptDropout });
}

/** SFT baseline: ε-MSE on the winners only (pass winners as images), with prompt dropout. */
export function sftObjective(
  model: DiffusionModel,
  promptDropout = DEFAULT_PROMPT_DROPOUT,
): Objective<CaptionedBatch> {
  return (batch, rng) => epsMseLoss(model, batch, rng, { promptDropout });
}

/** Diffusion-DPO against a frozen reference: offline pairs, or the online pairs of an iteration. */
export function dpoObjective(
  policy: DiffusionModel,
  reference: DiffusionModel,
  opts: DpoOptions,
): Objective<PreferenceBatch> {
  return (batch, rng) => dpoLoss(policy, reference, batch, rng, opts);
}

/** SPIN-Diffusion: the previous iterate is the reference, its own samples are the losers. */
export function spinObjective(
  policy: DiffusionModel,
  previousIterate: DiffusionModel,
  opts: DpoOptions,
): Objective<SpinBatch> {
  return (batch, rng) => spinLoss(policy, previousIterate, batch, rng, opts);
}

/** The improvement model's three-task mixture on preference pairs. */
export function improverObjective(
  improver: DiffusionModel,
  opts: ImproverLossOptions = {},
): Objective<PreferenceBatch> {
  return (batch, rng) => improverLoss(improver, batch, rng, opts);
}
