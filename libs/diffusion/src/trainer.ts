import * as tf from "@tensorflow/tfjs-core";
import "./gradients.js";
import { AdamW, type AdamWConfig } from "./adamw.js";
import { Ema } from "./ema.js";
import type { LossOutput } from "./loss-output.js";
import { type LrScheduleConfig, learningRateAt } from "./lr-schedule.js";
import type { Params } from "./params.js";
import { assertSeed, Rng } from "./rng.js";

/** A training objective: the loss of one microbatch; `rng` draws its timesteps and noise. */
export type Objective<B> = (batch: B, rng: Rng) => LossOutput;

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

/**
 * The training-step driver every job uses (pretraining, improver, SFT, offline/online DPO, SPIN):
 * gradient accumulation over microbatches, global-norm clipping, LR schedule, AdamW, optional EMA.
 * Holds no tensors between steps besides weights, optimiser state and EMA.
 */
export class Trainer<B> {
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
    const lr = learningRateAt(this.config.schedule, k);
    let acc: Map<string, tf.Tensor> | undefined;
    let gradNorm = 0;
    const sums = new Map<string, { total: number; count: number }>();
    for (let j = 0; j < microbatches.length; j++) {
      const rng = new Rng(this.config.seed, k * 65536 + j);
      let metrics: Record<string, tf.Scalar> = {};
      const { value, grads } = tf.variableGrads(() => {
        const out = this.objective(microbatches[j], rng);
        for (const m of Object.values(out.metrics)) tf.keep(m);
        metrics = out.metrics;
        return out.loss;
      }, this.vars);
      for (const [name, m] of Object.entries(metrics)) {
        const v = m.dataSync()[0];
        const s = sums.get(name) ?? { total: 0, count: 0 };
        s.total += v;
        s.count++;
        sums.set(name, s);
      }
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
      // Mean over microbatches, then PyTorch's clip_grad_norm_ (factor maxNorm / (norm + 1e-6) when below 1).
      const sq = tf.tidy(() => tf.sum(tf.square(flat)));
      const sumSq = sq.dataSync()[0];
      sq.dispose();
      const norm = Math.sqrt(sumSq) / microbatches.length;
      if (!Number.isFinite(norm)) {
        throw new Error(
          `Trainer: gradient norm is ${norm} at step ${k + 1}; stopping before corrupting the weights`,
        );
      }
      const maxNorm = this.config.maxGradNorm ?? 1;
      const clip = maxNorm > 0 && Number.isFinite(maxNorm) ? Math.min(1, maxNorm / (norm + 1e-6)) : 1;
      const scale = clip / microbatches.length;
      const g = scale === 1 ? flat : tf.mul(flat, scale);
      this.optimizer.applyFlat(g as tf.Tensor1D, lr);
      if (g !== flat) g.dispose();
      gradNorm = norm;
    } finally {
      flat.dispose();
    }
    this.ema?.update();
    this.steps++;
    const metrics: Record<string, number> = {};
    for (const [name, s] of sums) metrics[name] = s.total / s.count;
    return { step: this.steps, lr, gradNorm, metrics };
  }

  /** Releases optimiser state and EMA (not the parameters). */
  dispose(): void {
    this.optimizer.dispose();
    this.ema?.dispose();
  }
}
