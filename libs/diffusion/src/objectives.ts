import type { DpoOptions, PreferenceBatch } from "./dpo-loss.js";
import type { CaptionedBatch } from "./eps-mse-loss.js";
import type { ImproverLossOptions } from "./improver-loss.js";
import type { DiffusionModel } from "./model.js";
import type { SpinBatch } from "./spin-loss.js";
import { type ObjectiveSpec, splitObjective } from "./split-objective.js";
import type { Objective } from "./trainer.js";

/** Default prompt dropout of pretraining and SFT: 10 % null prompts keep classifier-free guidance usable. */
export const DEFAULT_PROMPT_DROPOUT = 0.1;

/** The objective function of a split objective, carrying it (what data-parallel training needs). */
function fromSplit<B>(spec: ObjectiveSpec, model: DiffusionModel, reference?: DiffusionModel): Objective<B> {
  const split = splitObjective(spec, model, reference);
  return Object.assign(
    (batch: B, rng: Parameters<Objective<B>>[1]) => split.loss(batch, split.draw(batch, rng)),
    {
      split,
    },
  );
}

/** Base-model pretraining on images + prompts: ε-MSE with prompt dropout. */
export function pretrainObjective(
  model: DiffusionModel,
  promptDropout = DEFAULT_PROMPT_DROPOUT,
): Objective<CaptionedBatch> {
  return fromSplit({ kind: "eps-mse", promptDropout }, model);
}

/** SFT baseline: ε-MSE on the winners only (pass winners as images), with prompt dropout. */
export function sftObjective(
  model: DiffusionModel,
  promptDropout = DEFAULT_PROMPT_DROPOUT,
): Objective<CaptionedBatch> {
  return fromSplit({ kind: "eps-mse", promptDropout }, model);
}

/** Diffusion-DPO against a frozen reference: offline pairs, or the online pairs of an iteration. */
export function dpoObjective(
  policy: DiffusionModel,
  reference: DiffusionModel,
  opts: DpoOptions,
): Objective<PreferenceBatch> {
  return fromSplit({ kind: "dpo", options: opts }, policy, reference);
}

/** SPIN-Diffusion: the previous iterate is the reference, its own samples are the losers. */
export function spinObjective(
  policy: DiffusionModel,
  previousIterate: DiffusionModel,
  opts: DpoOptions,
): Objective<SpinBatch> {
  return fromSplit({ kind: "spin", options: opts }, policy, previousIterate);
}

/** The improvement model's three-task mixture on preference pairs. */
export function improverObjective(
  improver: DiffusionModel,
  opts: ImproverLossOptions = {},
): Objective<PreferenceBatch> {
  return fromSplit({ kind: "improver", ...(opts.tasks ? { tasks: opts.tasks } : {}) }, improver);
}
