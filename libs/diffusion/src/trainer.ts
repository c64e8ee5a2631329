import * as tf from "@tensorflow/tfjs-core";
import "./gradients.js";
import { AdamW, type AdamWConfig } from "./adamw.js";
import { Ema } from "./ema.js";
import type { LossOutput } from "./loss-output.js";
import { type LrScheduleConfig, learningRateAt } from "./lr-schedule.js";
import type { Params } from "./params.js";
import { assertSeed, Rng } from "./rng.js";
import type { SplitObjective } from "./split-objective.js";

/**
 * A training objective: the loss of one microbatch; `rng` draws its timesteps and noise. The library's
 * objectives also carry their split form, which lets DataParallelTrainer compute slices of a
 * microbatch in worker threads with the same draws.
 */
export type Objective<B> = ((batch: B, rng: Rng) => LossOutput) & { split?: SplitObjective };

/** Settings of a training run's optimisation. */
export interface TrainerConfig {
  /** Learning-rate schedule (peak lr, warmup, constant or cosine). */
  schedule: LrScheduleConfig;
  /** AdamW settings. */
  adam?: AdamWConfig;
  /** Clip the global gradient norm to this (PyTorch semantics); 0 disables. Default 1. */
  maxGradNorm?: number;
  /** Keep an EMA of the weights with this decay; undefined = no EMA. */
  emaDecay?: number;
  /** Seed of the per-step randomness (timesteps, noise, dropout): step k, microbatch j uses Rng(seed, k·65536 + j). */
  seed: number;
}

/** What one optimiser step reports. */
export interface StepReport {
  /** 1-based index of the step just taken. */
  step: number;
  /** Learning rate used. */
  lr: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
  /** Objective metrics averaged over the microbatches (a metric absent from some is averaged where present). */
  metrics: Record<string, number>;
}

/** What jobs, checkpoints and training states use of a training driver (Trainer or DataParallelTrainer). */
export interface TrainingDriver<B> {
  /** The trained weights. */
  readonly params: Params;
  /** The optimiser (its state is saved for resuming). */
  readonly optimizer: AdamW;
  /** The EMA of the weights, when kept. */
  readonly ema: Ema | undefined;
  /** Optimiser steps taken so far. */
  readonly stepCount: number;
  /** Sets the step counter (resuming). */
  setStepCount(step: number): void;
  /** One optimiser step over the given microbatches (their gradients are averaged). */
  step(microbatches: readonly B[]): StepReport | Promise<StepReport>;
  /** Releases what the driver holds besides the parameters. */
  dispose(): void | Promise<void>;
}

/** The seed stream of step k's microbatch j (their randomness: Rng(seed, stream)). */
export function microbatchStream(step: number, microbatch: number): number {
  return step * 65536 + microbatch;
}

/** Means over microbatches of the metrics each reported (a metric absent from some is averaged where present). */
export function averageMetrics(perMicrobatch: readonly Record<string, number>[]): Record<string, number> {
  const sums = new Map<string, { total: number; count: number }>();
  for (const m of perMicrobatch) {
    for (const [name, v] of Object.entries(m)) {
      const s = sums.get(name) ?? { total: 0, count: 0 };
      s.total += v;
      s.count++;
      sums.set(name, s);
    }
  }
  const out: Record<string, number> = {};
  for (const [name, s] of sums) out[name] = s.total / s.count;
  return out;
}

/**
 * The training-step driver every job uses (pretraining, improver, SFT, offline/online DPO, SPIN):
 * gradient accumulation over microbatches, global-norm clipping, LR schedule, AdamW, optional EMA.
 * Holds no tensors between steps besides weights, optimiser state and EMA.
 */
export class Trainer<B> implements TrainingDriver<B> {
  readonly optimizer: AdamW;
  readonly ema: Ema | undefined;
  private steps = 0;
  private readonly vars: tf.Variable[];
  private readonly nameOf = new Map<string, string>();

  constructor(
    readonly params: Params,
    private readonly objective: Objective<B>,
    readonly config: TrainerConfig,
  ) {
    assertSeed(config.seed, "Trainer seed");
    learningRateAt(config.schedule, 0);
    if (params.size === 0) throw new Error("Trainer: no parameters to train");
    this.vars = [...params.values()];
    for (const [name, v] of params) {
      if (!v.trainable) throw new Error(`Trainer: parameter ${name} is not trainable`);
      this.nameOf.set(v.name, name);
    }
    this.optimizer = new AdamW(params, config.adam);
    this.ema = config.emaDecay === undefined ? undefined : new Ema(params, config.emaDecay);
  }

  /** Optimiser steps taken so far. */
  get stepCount(): number {
    return this.steps;
  }

  /** Sets the step counter (resuming: the LR schedule and the per-step randomness follow it). */
  setStepCount(step: number): void {
    if (!Number.isInteger(step) || step < 0) throw new Error(`Trainer: bad step ${step}`);
    this.steps = step;
  }

  /** One optimiser step over the given microbatches (their gradients are averaged). */
  step(microbatches: readonly B[]): StepReport {
    if (microbatches.length === 0) throw new Error("Trainer.step: no microbatches");
    const k = this.steps;
    let acc: Map<string, tf.Tensor> | undefined;
    const perMicrobatch: Record<string, number>[] = [];
    for (let j = 0; j < microbatches.length; j++) {
      const rng = new Rng(this.config.seed, microbatchStream(k, j));
      let metrics: Record<string, tf.Scalar> = {};
      const { value, grads } = tf.variableGrads(() => {
        const out = this.objective(microbatches[j], rng);
        for (const m of Object.values(out.metrics)) tf.keep(m);
        metrics = out.metrics;
        return out.loss;
      }, this.vars);
      const values: Record<string, number> = {};
      for (const [name, m] of Object.entries(metrics)) values[name] = m.dataSync()[0];
      perMicrobatch.push(values);
      tf.dispose([...new Set([value, ...Object.values(metrics)])]);
      if (!acc) {
        acc = new Map();
        for (const [vn, g] of Object.entries(grads)) acc.set(this.nameOf.get(vn)!, g);
      } else {
        for (const [vn, g] of Object.entries(grads)) {
          const name = this.nameOf.get(vn)!;
          const prev = acc.get(name);
          acc.set(name, prev ? tf.add(prev, g) : tf.clone(g));
          prev?.dispose();
          g.dispose();
        }
      }
    }
    const flat = this.optimizer.layout.flatten(acc!);
    for (const g of acc!.values()) g.dispose();
    try {
      return this.applyGradient(flat, microbatches.length, perMicrobatch);
    } finally {
      flat.dispose();
    }
  }

  /**
   * Takes one optimiser step from `sum`, the sum of `microbatches` microbatch gradients as one flat
   * vector in the optimiser's layout (what step computes, or what data-parallel workers computed):
   * their mean, clipped to the global norm, goes to AdamW, then the EMA. `metrics` are the
   * microbatches' metrics. Does not take ownership of `sum`.
   */
  applyGradient(
    sum: tf.Tensor1D,
    microbatches: number,
    metrics: readonly Record<string, number>[],
  ): StepReport {
    if (!Number.isInteger(microbatches) || microbatches < 1) {
      throw new Error(`Trainer.applyGradient: bad microbatch count ${microbatches}`);
    }
    const k = this.steps;
    const lr = learningRateAt(this.config.schedule, k);
    // Mean over microbatches, then PyTorch's clip_grad_norm_ (factor maxNorm / (norm + 1e-6) when below 1).
    const sq = tf.tidy(() => tf.sum(tf.square(sum)));
    const sumSq = sq.dataSync()[0];
    sq.dispose();
    const norm = Math.sqrt(sumSq) / microbatches;
    if (!Number.isFinite(norm)) {
      throw new Error(
        `Trainer: gradient norm is ${norm} at step ${k + 1}; stopping before corrupting the weights`,
      );
    }
    const maxNorm = this.config.maxGradNorm ?? 1;
    const clip = maxNorm > 0 && Number.isFinite(maxNorm) ? Math.min(1, maxNorm / (norm + 1e-6)) : 1;
    const scale = clip / microbatches;
    const g = scale === 1 ? sum : tf.mul(sum, scale);
    try {
      this.optimizer.applyFlat(g as tf.Tensor1D, lr);
    } finally {
      if (g !== sum) g.dispose();
    }
    this.ema?.update();
    this.steps++;
    return { step: this.steps, lr, gradNorm: norm, metrics: averageMetrics(metrics) };
  }

  /** Releases optimiser state and EMA (not the parameters). */
  dispose(): void {
    this.optimizer.dispose();
    this.ema?.dispose();
  }
}
