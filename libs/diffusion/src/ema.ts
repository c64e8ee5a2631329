import * as tf from "@tensorflow/tfjs-core";
import type { Params } from "./params.js";

/**
 * Exponential moving average of parameters: s ← d·s + (1 − d)·p after every optimiser step, with
 * d = min(decay, (1 + k)/(10 + k)) at update k when warmup is on (diffusers' EMAModel), so early
 * averages are not dominated by the initial weights.
 */
export class Ema {
  /** The averaged weights, same names as the tracked parameters. */
  readonly shadow: Params = new Map();
  private updates = 0;

  constructor(
    private readonly params: Params,
    readonly decay: number,
    private readonly warmup = true,
  ) {
    if (!(decay >= 0 && decay < 1)) throw new Error(`EMA decay must be in [0, 1), got ${decay}`);
    for (const [k, p] of params) this.shadow.set(k, tf.variable(p, false));
  }

  /** The decay used by the next update. */
  currentDecay(): number {
    return this.warmup ? Math.min(this.decay, (1 + this.updates) / (10 + this.updates)) : this.decay;
  }

  /** Folds the current parameters into the average. */
  update(): void {
    const d = this.currentDecay();
    tf.tidy(() => {
      for (const [k, p] of this.params) {
        const s = this.shadow.get(k)!;
        s.assign(tf.add(tf.mul(s, d), tf.mul(p, 1 - d)));
      }
    });
    this.updates++;
  }

  /** Copies the averaged weights into `target` (e.g. a model used for evaluation or checkpointing). */
  copyTo(target: Params): void {
    for (const [k, s] of this.shadow) {
      const t = target.get(k);
      if (!t) throw new Error(`Ema.copyTo: target has no parameter ${k}`);
      t.assign(s);
    }
  }

  /** Releases the averages. */
  dispose(): void {
    for (const s of this.shadow.values()) s.dispose();
  }
}
