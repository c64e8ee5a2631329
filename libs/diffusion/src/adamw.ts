import * as tf from "@tensorflow/tfjs-core";
import { OptimizerSimd } from "./backend/optimizer-simd.js";
import { FlatLayout } from "./flat-params.js";
import type { Params } from "./params.js";

/** AdamW hyper-parameters (PyTorch's defaults). */
export interface AdamWConfig {
  /** First-moment decay. Default 0.9. */
  beta1?: number;
  /** Second-moment decay. Default 0.999. */
  beta2?: number;
  /** Denominator epsilon. Default 1e-8. */
  eps?: number;
  /** Decoupled weight decay (multiplied by the learning rate, as in PyTorch). Default 0.01. */
  weightDecay?: number;
}

/**
 * AdamW (Loshchilov & Hutter) over a parameter map, exactly PyTorch's update:
 * p ← p − lr·wd·p; m ← β1 m + (1 − β1) g; v ← β2 v + (1 − β2) g²;
 * p ← p − lr · (m / (1 − β1^k)) / (√(v / (1 − β2^k)) + ε).
 * The moments are kept as flat vectors over all parameters.
 */
export class AdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  readonly layout: FlatLayout;
  private readonly m: tf.Variable;
  private readonly v: tf.Variable;
  private k = 0;

  constructor(
    private readonly params: Params,
    cfg: AdamWConfig = {},
  ) {
    this.beta1 = cfg.beta1 ?? 0.9;
    this.beta2 = cfg.beta2 ?? 0.999;
    this.eps = cfg.eps ?? 1e-8;
    this.weightDecay = cfg.weightDecay ?? 0.01;
    for (const [k, val] of [
      ["beta1", this.beta1],
      ["beta2", this.beta2],
    ] as const) {
      if (!(val >= 0 && val < 1)) throw new Error(`AdamW: ${k} must be in [0, 1), got ${val}`);
    }
    if (!(this.eps > 0)) throw new Error(`AdamW: eps must be positive, got ${this.eps}`);
    if (!(this.weightDecay >= 0)) throw new Error(`AdamW: weightDecay must be ≥ 0, got ${this.weightDecay}`);
    this.layout = new FlatLayout(params);
    // A variable shares its initial tensor's data but not its handle: the zeros must be disposed
    // here, or each optimiser leaves two tensors behind after dispose().
    const zeros = tf.zeros([this.layout.total]);
    this.m = tf.variable(zeros, false);
    this.v = tf.variable(zeros, false);
    zeros.dispose();
  }

  /** Number of updates applied so far. */
  get iterations(): number {
    return this.k;
  }

  /** Applies one update from named gradients; a parameter without a gradient gets a zero gradient. */
  apply(grads: ReadonlyMap<string, tf.Tensor>, lr: number): void {
    for (const name of grads.keys()) {
      if (!this.params.has(name)) throw new Error(`AdamW: gradient for unknown parameter ${name}`);
    }
    const flat = this.layout.flatten(grads);
    try {
      this.applyFlat(flat, lr);
    } finally {
      flat.dispose();
    }
  }

  /** Applies one update from a flat gradient in the layout's order. */
  applyFlat(g: tf.Tensor1D, lr: number): void {
    if (!(Number.isFinite(lr) && lr >= 0)) throw new Error(`AdamW: learning rate must be ≥ 0, got ${lr}`);
    if (g.size !== this.layout.total)
      throw new Error(`AdamW: flat gradient has ${g.size} values, expected ${this.layout.total}`);
    this.k++;
    const c1 = 1 - this.beta1 ** this.k;
    const sqrtC2 = Math.sqrt(1 - this.beta2 ** this.k);
    const decay = 1 - lr * this.weightDecay;
    const simd = OptimizerSimd.active();
    const scalars = {
      beta1: this.beta1,
      beta2: this.beta2,
      eps: this.eps,
      stepScale: lr / c1,
      sqrtC2,
      decay,
    };
    if (simd?.adamw([...this.params.values()], this.layout.offsets, g, this.m, this.v, scalars)) return;
    tf.tidy(() => {
      const m1 = tf.add(tf.mul(this.m, this.beta1), tf.mul(g, 1 - this.beta1));
      const v1 = tf.add(tf.mul(this.v, this.beta2), tf.mul(tf.square(g), 1 - this.beta2));
      this.m.assign(m1);
      this.v.assign(v1);
      const step = tf.div(tf.mul(m1, lr / c1), tf.add(tf.div(tf.sqrt(v1), sqrtC2), this.eps)) as tf.Tensor1D;
      const deltas = this.layout.unflatten(step);
      for (const [name, p] of this.params) {
        const base = decay === 1 ? p : tf.mul(p, decay);
        p.assign(tf.sub(base, deltas.get(name)!));
      }
    });
  }

  /** Optimiser state for resuming: the update count and the flat moment vectors (views, not copies). */
  state(): { iterations: number; m: tf.Tensor1D; v: tf.Tensor1D } {
    return { iterations: this.k, m: this.m as tf.Tensor1D, v: this.v as tf.Tensor1D };
  }

  /** Restores state written by state(). */
  loadState(iterations: number, m: tf.Tensor, v: tf.Tensor): void {
    if (!Number.isInteger(iterations) || iterations < 0)
      throw new Error(`AdamW: bad iteration count ${iterations}`);
    for (const [name, t] of [
      ["m", m],
      ["v", v],
    ] as const) {
      if (t.size !== this.layout.total)
        throw new Error(`AdamW.loadState: ${name} has ${t.size} values, expected ${this.layout.total}`);
    }
    this.m.assign(tf.reshape(m, [-1]));
    this.v.assign(tf.reshape(v, [-1]));
    this.k = iterations;
  }

  /** Releases the moment estimates. */
  dispose(): void {
    this.m.dispose();
    this.v.dispose();
  }
}
