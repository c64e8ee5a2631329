import {
  assertDpoInputs,
  type DpoDraws,
  type DpoOptions,
  dpoLossFromDraws,
  drawDpo,
  type PreferenceBatch,
} from "./dpo-loss.js";
import {
  assertCaptionedBatch,
  type CaptionedBatch,
  drawEpsMse,
  type EpsMseDraws,
  epsMseLossFromDraws,
} from "./eps-mse-loss.js";
import { assertImageBatch, sliceImages } from "./image-batch.js";
import {
  assertImproverInputs,
  drawImprover,
  type ImproverDraws,
  type ImproverTaskProbabilities,
  improverLossFromDraws,
} from "./improver-loss.js";
import type { LossOutput } from "./loss-output.js";
import type { DiffusionModel } from "./model.js";
import { latentSize } from "./noising.js";
import type { Rng } from "./rng.js";
import type { SpinBatch } from "./spin-loss.js";

/**
 * A training objective as plain data, so that another thread can rebuild it around its own copy of
 * the models: ε-MSE (pretraining, SFT), the improver's task mixture, Diffusion-DPO, SPIN.
 */
export type ObjectiveSpec =
  | { kind: "eps-mse"; promptDropout: number }
  | { kind: "improver"; tasks?: ImproverTaskProbabilities }
  | { kind: "dpo"; options: DpoOptions }
  | { kind: "spin"; options: DpoOptions };

/** Per-example random draws of one of the objectives (timesteps and noise, plus dropout or task plans). */
export type ObjectiveDraws = EpsMseDraws | DpoDraws | ImproverDraws;

/**
 * An objective whose randomness is drawn per example before any tensor work, so that any slice of a
 * batch can be computed on its own (in another thread) with exactly the draws the whole batch uses:
 * loss(batch, draw(batch, rng)) is the objective's value, and every loss is a mean over examples, so
 * Σ over slices of (slice size / batch size) · loss(slice) is the loss of the whole batch.
 */
export interface SplitObjective<B = unknown> {
  /** What the objective is, to rebuild it elsewhere with splitObjective. */
  readonly spec: ObjectiveSpec;
  /** The trained model. */
  readonly model: DiffusionModel;
  /** DPO and SPIN: the frozen reference. */
  readonly reference?: DiffusionModel;
  /** Examples in a batch. */
  size(batch: B): number;
  /** Draws the randomness of a whole batch (validating it first). */
  draw(batch: B, rng: Rng): ObjectiveDraws;
  /** Examples [start, end) of a batch and of its draws, sharing no memory with them. */
  slice(batch: B, draws: ObjectiveDraws, start: number, end: number): { batch: B; draws: ObjectiveDraws };
  /** The loss and metrics of a batch (or slice) with its draws. */
  loss(batch: B, draws: ObjectiveDraws): LossOutput;
  /**
   * How much each metric of a slice weighs when slices are combined: metrics are means over examples,
   * so by default the slice's size; the improver's per-task losses weigh the examples of that task.
   */
  metricWeights(batch: B, draws: ObjectiveDraws, metrics: readonly string[]): Record<string, number>;
}

function slicePrompts(prompts: readonly string[], start: number, end: number): string[] {
  return prompts.slice(start, end);
}

function sliceNoise(
  model: DiffusionModel,
  d: { t: number[]; noise: Float32Array },
  start: number,
  end: number,
) {
  const per = latentSize(model);
  return { t: d.t.slice(start, end), noise: d.noise.slice(start * per, end * per) };
}

function uniformWeights(n: number, metrics: readonly string[]): Record<string, number> {
  return Object.fromEntries(metrics.map((m) => [m, n]));
}

function checkSlice(n: number, start: number, end: number): void {
  if (!(Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start <= end && end <= n)) {
    throw new Error(`slice [${start}, ${end}) of a batch of ${n}`);
  }
}

function epsMse(model: DiffusionModel, promptDropout: number): SplitObjective<CaptionedBatch> {
  return {
    spec: { kind: "eps-mse", promptDropout },
    model,
    size: (b) => b.images.n,
    draw(b, rng) {
      assertCaptionedBatch(model, b);
      return drawEpsMse(model, b.images.n, rng, { promptDropout });
    },
    slice(b, draws, start, end) {
      checkSlice(b.images.n, start, end);
      const d = draws as EpsMseDraws;
      return {
        batch: { prompts: slicePrompts(b.prompts, start, end), images: sliceImages(b.images, start, end) },
        draws: { dropPrompt: d.dropPrompt.slice(start, end), ...sliceNoise(model, d, start, end) },
      };
    },
    loss: (b, draws) => epsMseLossFromDraws(model, b, draws as EpsMseDraws),
    metricWeights: (b, _d, metrics) => uniformWeights(b.images.n, metrics),
  };
}

function slicePairs(b: PreferenceBatch, start: number, end: number): PreferenceBatch {
  checkSlice(b.winners.n, start, end);
  return {
    prompts: slicePrompts(b.prompts, start, end),
    winners: sliceImages(b.winners, start, end),
    losers: sliceImages(b.losers, start, end),
  };
}

function improver(model: DiffusionModel, tasks?: ImproverTaskProbabilities): SplitObjective<PreferenceBatch> {
  return {
    spec: { kind: "improver", ...(tasks ? { tasks } : {}) },
    model,
    size: (b) => b.winners.n,
    draw(b, rng) {
      assertImproverInputs(model, b);
      return drawImprover(model, b.winners.n, rng, tasks ? { tasks } : {});
    },
    slice(b, draws, start, end) {
      const d = draws as ImproverDraws;
      return {
        batch: slicePairs(b, start, end),
        draws: { plan: d.plan.slice(start, end), ...sliceNoise(model, d, start, end) },
      };
    },
    loss: (b, draws) => improverLossFromDraws(model, b, draws as ImproverDraws),
    metricWeights(b, draws, metrics) {
      const w = uniformWeights(b.winners.n, metrics);
      for (const m of metrics) {
        // loss_<task> is the mean over that task's examples.
        const task = m.startsWith("loss_") ? m.slice("loss_".length) : undefined;
        if (task) w[m] = (draws as ImproverDraws).plan.filter((p) => p.task === task).length;
      }
      return w;
    },
  };
}

function dpo(
  policy: DiffusionModel,
  reference: DiffusionModel,
  opts: DpoOptions,
): SplitObjective<PreferenceBatch> {
  return {
    spec: { kind: "dpo", options: { ...opts } },
    model: policy,
    reference,
    size: (b) => b.winners.n,
    draw(b, rng) {
      assertDpoInputs(policy, reference, b, opts);
      return drawDpo(policy, b.winners.n, rng);
    },
    slice: (b, draws, start, end) => ({
      batch: slicePairs(b, start, end),
      draws: sliceNoise(policy, draws as DpoDraws, start, end),
    }),
    loss: (b, draws) => dpoLossFromDraws(policy, reference, b, draws as DpoDraws, opts),
    metricWeights: (b, _d, metrics) => uniformWeights(b.winners.n, metrics),
  };
}

function asPairs(b: SpinBatch): PreferenceBatch {
  return { prompts: b.prompts, winners: b.real, losers: b.generated };
}

function spin(policy: DiffusionModel, previous: DiffusionModel, opts: DpoOptions): SplitObjective<SpinBatch> {
  const inner = dpo(policy, previous, opts);
  return {
    spec: { kind: "spin", options: { ...opts } },
    model: policy,
    reference: previous,
    size: (b) => b.real.n,
    draw(b, rng) {
      assertImageBatch(b.real, "spinLoss: real", policy.imageSize);
      assertImageBatch(b.generated, "spinLoss: generated", policy.imageSize);
      return inner.draw(asPairs(b), rng);
    },
    slice(b, draws, start, end) {
      const s = inner.slice(asPairs(b), draws, start, end);
      return {
        batch: { prompts: s.batch.prompts, real: s.batch.winners, generated: s.batch.losers },
        draws: s.draws,
      };
    },
    loss: (b, draws) => inner.loss(asPairs(b), draws),
    metricWeights: (b, d, metrics) => inner.metricWeights(asPairs(b), d, metrics),
  };
}

/**
 * Builds the objective `spec` describes around `model` (and, for DPO and SPIN, the frozen `reference`,
 * SPIN's previous iterate).
 */
export function splitObjective(
  spec: ObjectiveSpec,
  model: DiffusionModel,
  reference?: DiffusionModel,
): SplitObjective<unknown> {
  const needsReference = spec.kind === "dpo" || spec.kind === "spin";
  if (needsReference && !reference) throw new Error(`objective ${spec.kind}: needs a reference model`);
  switch (spec.kind) {
    case "eps-mse":
      return epsMse(model, spec.promptDropout) as SplitObjective<unknown>;
    case "improver":
      return improver(model, spec.tasks) as SplitObjective<unknown>;
    case "dpo":
      return dpo(model, reference!, spec.options) as SplitObjective<unknown>;
    case "spin":
      return spin(model, reference!, spec.options) as SplitObjective<unknown>;
    default:
      throw new Error(`unknown objective kind ${JSON.stringify((spec as { kind: unknown }).kind)}`);
  }
}
