import * as tf from "@tensorflow/tfjs-core";
import { assertPreferenceBatch, type PreferenceBatch } from "./dpo-loss.js";
import { type LossOutput, tidyLoss } from "./loss-output.js";
import type { DiffusionModel } from "./model.js";
import { addNoise, drawTimesteps, latentSize, perSampleMse } from "./noising.js";
import type { Rng } from "./rng.js";

/** The improvement model's three training tasks (docs/architecture.md). */
export type ImproverTask = "improve" | "reconstruct" | "unconditional";

/** Probabilities of the three tasks; they must sum to 1. */
export interface ImproverTaskProbabilities {
  /** Conditional improvement: target x_w, conditions (x_l, c). */
  improve: number;
  /** Reconstruction: target x ∈ {x_w, x_l}, conditions (x, ∅ text); trains the ε(x, ∅) branch of Eq. 9. */
  reconstruct: number;
  /** Unconditional: target x ∈ {x_w, x_l}, conditions (∅ image, ∅ text); trains the ε(∅, ∅) branch. */
  unconditional: number;
}

/**
 * Defaults: 60 % improvement, 20 % reconstruction, 20 % unconditional. Both guidance branches of
 * Eq. 9 need their own null-condition training; at this scale 20 % each (InstructPix2Pix used 5 % per
 * dropout at SD scale) keeps them accurate while most steps train the improvement itself.
 */
export const DEFAULT_IMPROVER_TASKS: ImproverTaskProbabilities = {
  improve: 0.6,
  reconstruct: 0.2,
  unconditional: 0.2,
};

/** What one sample of an improver batch trains on. */
export interface ImproverSamplePlan {
  task: ImproverTask;
  /** Which image of the pair is the denoising target. */
  target: "winner" | "loser";
  /** Which image of the pair conditions the model ("none" = the null image, zeros). */
  condition: "winner" | "loser" | "none";
  /** Whether the prompt is given (false = "" text). */
  text: boolean;
}

/** Options of improverLoss. */
export interface ImproverLossOptions {
  /** Task mixture; default DEFAULT_IMPROVER_TASKS. */
  tasks?: ImproverTaskProbabilities;
}

/** Validates task probabilities (non-negative, summing to 1 within 1e-6). */
export function checkTaskProbabilities(p: ImproverTaskProbabilities): void {
  for (const k of ["improve", "reconstruct", "unconditional"] as const) {
    if (!(Number.isFinite(p[k]) && p[k] >= 0))
      throw new Error(`improver task probability ${k} must be ≥ 0, got ${p[k]}`);
  }
  const sum = p.improve + p.reconstruct + p.unconditional;
  if (Math.abs(sum - 1) > 1e-6) throw new Error(`improver task probabilities must sum to 1, got ${sum}`);
}

/** Draws each sample's task (and, for reconstruction / unconditional, which image of the pair). */
export function planImproverBatch(
  n: number,
  rng: Rng,
  probs: ImproverTaskProbabilities,
): ImproverSamplePlan[] {
  checkTaskProbabilities(probs);
  const plan: ImproverSamplePlan[] = [];
  for (let i = 0; i < n; i++) {
    const u = rng.next();
    if (u < probs.improve) {
      plan.push({ task: "improve", target: "winner", condition: "loser", text: true });
    } else {
      const which = rng.next() < 0.5 ? "winner" : "loser";
      if (u < probs.improve + probs.reconstruct)
        plan.push({ task: "reconstruct", target: which, condition: which, text: false });
      else plan.push({ task: "unconditional", target: which, condition: "none", text: false });
    }
  }
  return plan;
}

/** The random draws of the improver loss for a batch, one entry per pair. */
export interface ImproverDraws {
  /** Task, target and condition of pair i. */
  plan: ImproverSamplePlan[];
  /** Timestep of pair i. */
  t: number[];
  /** ε of pair i at `[i·per, (i + 1)·per)` with per = latentSize(model). */
  noise: Float32Array;
}

/** Draws the improver loss's randomness for n pairs from `rng`: the plan, the timesteps, then the noise. */
export function drawImprover(
  improver: DiffusionModel,
  n: number,
  rng: Rng,
  opts: ImproverLossOptions = {},
): ImproverDraws {
  const plan = planImproverBatch(n, rng, opts.tasks ?? DEFAULT_IMPROVER_TASKS);
  const t = drawTimesteps(rng, n, improver.schedule.timesteps);
  return { plan, t, noise: rng.normals(n * latentSize(improver)) };
}

/** Throws a message naming the problem unless the batch (and models) fit this loss. */
export function assertImproverInputs(improver: DiffusionModel, batch: PreferenceBatch): void {
  if (improver.kind !== "improver") throw new Error("improverLoss: expects an improvement model");
  assertPreferenceBatch(batch, improver.imageSize, "improverLoss");
}

/**
 * The improvement model's three-task ε-MSE on preference pairs. Metrics: `loss` (mean over the batch)
 * and `loss_improve`, `loss_reconstruct`, `loss_unconditional` for the tasks present in the batch.
 */
export function improverLoss(
  improver: DiffusionModel,
  batch: PreferenceBatch,
  rng: Rng,
  opts: ImproverLossOptions = {},
): LossOutput {
  assertImproverInputs(improver, batch);
  return improverLossFromDraws(improver, batch, drawImprover(improver, batch.winners.n, rng, opts));
}

/** The improver loss of a batch with given draws (any slice of a batch with the same slice of its draws). */
export function improverLossFromDraws(
  improver: DiffusionModel,
  batch: PreferenceBatch,
  draws: ImproverDraws,
): LossOutput {
  assertImproverInputs(improver, batch);
  const n = batch.winners.n;
  const { plan, t } = draws;
  if (plan.length !== n || t.length !== n || draws.noise.length !== n * latentSize(improver)) {
    throw new Error(`improverLoss: draws for ${t.length} pairs, batch of ${n}`);
  }
  const per = batch.winners.height * batch.winners.width * 3;
  const target = new Float32Array(n * per);
  const cond = new Float32Array(n * per);
  const keep = new Float32Array(n);
  const pick = (which: "winner" | "loser") => (which === "winner" ? batch.winners.data : batch.losers.data);
  for (let i = 0; i < n; i++) {
    const p = plan[i];
    target.set(pick(p.target).subarray(i * per, (i + 1) * per), i * per);
    if (p.condition !== "none") {
      cond.set(pick(p.condition).subarray(i * per, (i + 1) * per), i * per);
      keep[i] = 1;
    }
  }
  const prompts = plan.map((p, i) => (p.text ? batch.prompts[i] : ""));
  const S = improver.imageSize;
  return tidyLoss(() => {
    const toModel = (d: Float32Array) => tf.sub(tf.mul(tf.tensor4d(d, [n, S, S, 3]), 2), 1) as tf.Tensor4D;
    const x0 = improver.codec.encode(toModel(target));
    // The null image condition is zeros in the latent space, as improve() uses it.
    const c = tf.mul(improver.codec.encode(toModel(cond)), tf.tensor4d(keep, [n, 1, 1, 1])) as tf.Tensor4D;
    const [, h, w, ch] = x0.shape;
    const noise = tf.tensor4d(draws.noise, [n, h, w, ch]);
    const pred = improver.predictEps(addNoise(improver.schedule, x0, noise, t), t, prompts, c);
    return improverLossFromPredictions(pred, noise, plan);
  });
}

/** The mixture loss from given predictions and a plan (exposed for exact tests). */
export function improverLossFromPredictions(
  pred: tf.Tensor4D,
  noise: tf.Tensor4D,
  plan: readonly ImproverSamplePlan[],
): LossOutput {
  return tidyLoss(() => {
    const mse = perSampleMse(pred, noise);
    const loss = tf.mean(mse) as tf.Scalar;
    const metrics: Record<string, tf.Scalar> = { loss };
    for (const task of ["improve", "reconstruct", "unconditional"] as const) {
      const mask = new Float32Array(plan.length);
      let count = 0;
      for (let i = 0; i < plan.length; i++) {
        if (plan[i].task === task) {
          mask[i] = 1;
          count++;
        }
      }
      if (count > 0)
        metrics[`loss_${task}`] = tf.div(tf.sum(tf.mul(mse, tf.tensor1d(mask))), count) as tf.Scalar;
    }
    return { loss, metrics };
  });
}
