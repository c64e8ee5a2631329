import { type DpoOptions, dpoLoss } from "./dpo-loss.js";
import { assertImageBatch, type ImageBatch } from "./image-batch.js";
import type { LossOutput } from "./loss-output.js";
import type { DiffusionModel } from "./model.js";
import type { Rng } from "./rng.js";

/** One SPIN-Diffusion batch: real images from the data and the previous iterate's own samples. */
export interface SpinBatch {
  /** One prompt per pair. */
  prompts: readonly string[];
  /** Real images for the prompts (the dataset's winners; its losers are not used). */
  real: ImageBatch;
  /** Samples of the previous iterate θ_k for the same prompts (the losers). */
  generated: ImageBatch;
}

/**
 * SPIN-Diffusion (Yuan et al. 2024), self-play fine-tuning: the previous iterate θ_k is both the
 * frozen reference and the source of the dispreferred images, the data's images are preferred.
 * Per step it is the Diffusion-DPO objective with (x_w, x_l) = (real, θ_k's sample) and
 * reference θ_k, with shared t and ε per pair; metrics as in dpoLoss.
 */
export function spinLoss(
  policy: DiffusionModel,
  previousIterate: DiffusionModel,
  batch: SpinBatch,
  rng: Rng,
  opts: DpoOptions,
): LossOutput {
  assertImageBatch(batch.real, "spinLoss: real", policy.imageSize);
  assertImageBatch(batch.generated, "spinLoss: generated", policy.imageSize);
  return dpoLoss(
    policy,
    previousIterate,
    { prompts: batch.prompts, winners: batch.real, losers: batch.generated },
    rng,
    opts,
  );
}
