import * as tf from "@tensorflow/tfjs-core";
import { OptimizerSimd } from "./backend/optimizer-simd.js";
import { FlatLayout } from "./flat-params.js";
import type { Params } from "./params.js";

/**
 * Exponential moving average of parameters: s ← d·s + (1 − d)·p after every optimiser step, with
 * d = min(decay, (1 + k)/(10 + k)) at update k when warmup is on (diffusers' EMAModel), so early
 * averages are not dominated by the initial weights. Kept as one flat vector.
 */
export class Ema {
  readonly layout: FlatLayout;
  private readonly shadow: tf.Variable;
  private updates = 0;

  constructor(
    private readonly params: Params,
    readonly decay: number,
    private readonly warmup = true,
  ) {
    if (!(decay >= 0 && decay < 1)) throw new Error(`EMA decay must be in [0, 1), got ${decay}`);
    this.layout = new FlatLayout(params);
    const init = this.layout.flatten(params);
    this.shadow = tf.variable(init, false);
    init.dispose();
  }

  /** Updates folded in so far. */
  get count(): number {
    return this.updates;
  }

  /** The decay used by the next update. */
  currentDecay(): number {
    return this.warmup ? Math.min(this.decay, (1 + this.updates) / (10 + this.updates)) : this.decay;
  }

  /** Folds the current parameters into the average. */
  update(): void {
    const d = this.currentDecay();
    const params = [...this.params.values()];
    if (!OptimizerSimd.active()?.ema(this.shadow, params, this.layout.offsets, d)) {
      tf.tidy(() => {
        this.shadow.assign(tf.add(tf.mul(this.shadow, d), tf.mul(this.layout.flatten(this.params), 1 - d)));
      });
    }
    this.updates++;
  }

  /** The averaged weights by name (new tensors; the caller disposes them). */
  averages(): Map<string, tf.Tensor> {
    return this.layout.unflatten(this.shadow as tf.Tensor1D);
  }

  /** Copies the averaged weights into `target` (e.g. a model used for evaluation or checkpointing). */
  copyTo(target: Params): void {
    const avg = this.averages();
    try {
      for (const [k, s] of avg) {
        const t = target.get(k);
        if (!t) throw new Error(`Ema.copyTo: target has no parameter ${k}`);
        t.assign(s);
      }
    } finally {
      for (const s of avg.values()) s.dispose();
    }
  }

  /** The flat average (a view, not a copy) and the update count, for resuming. */
  state(): { count: number; average: tf.Tensor1D } {
    return { count: this.updates, average: this.shadow as tf.Tensor1D };
  }

  /** Restores state written by state(). */
  loadState(count: number, average: tf.Tensor): void {
    if (!Number.isInteger(count) || count < 0) throw new Error(`Ema.loadState: bad update count ${count}`);
    if (average.size !== this.layout.total) {
      throw new Error(`Ema.loadState: average has ${average.size} values, expected ${this.layout.total}`);
    }
    this.shadow.assign(tf.reshape(average, [-1]));
    this.updates = count;
  }

  /** Releases the average. */
  dispose(): void {
    this.shadow.dispose();
  }
}
