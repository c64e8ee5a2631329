import * as tf from "@tensorflow/tfjs-core";
import type { Params } from "./params.js";

/** AdamW hyper-parameters (PyTorch's defaults except where noted). */
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
 */
export class AdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  private readonly m = new Map<string, tf.Variable>();
  private readonly v = new Map<string, tf.Variable>();
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
    for (const [name, p] of params) {
      this.m.set(name, tf.variable(tf.zerosLike(p), false));
      this.v.set(name, tf.variable(tf.zerosLike(p), false));
    }
  }

  /** Number of updates applied so far. */
  get iterations(): number {
    return this.k;
  }

  /** Applies one update with learning rate `lr`; parameters without a gradient are left unchanged. */
  apply(grads: ReadonlyMap<string, tf.Tensor>, lr: number): void {
    if (!(Number.isFinite(lr) && lr >= 0)) throw new Error(`AdamW: learning rate must be ≥ 0, got ${lr}`);
    for (const name of grads.keys()) {
      if (!this.params.has(name)) throw new Error(`AdamW: gradient for unknown parameter ${name}`);
    }
    this.k++;
    const c1 = 1 - this.beta1 ** this.k;
    const c2 = 1 - this.beta2 ** this.k;
    const stepSize = lr / c1;
    const sqrtC2 = Math.sqrt(c2);
    const decay = 1 - lr * this.weightDecay;
    tf.tidy(() => {
      for (const [name, p] of this.params) {
        const g = grads.get(name);
        if (!g) continue;
        const m = this.m.get(name)!;
        const v = this.v.get(name)!;
        const m1 = tf.add(tf.mul(m, this.beta1), tf.mul(g, 1 - this.beta1));
        const v1 = tf.add(tf.mul(v, this.beta2), tf.mul(tf.square(g), 1 - this.beta2));
        m.assign(m1);
        v.assign(v1);
        const denom = tf.add(tf.div(tf.sqrt(v1), sqrtC2), this.eps);
        const decayed = decay === 1 ? p : tf.mul(p, decay);
        p.assign(tf.sub(decayed, tf.mul(tf.div(m1, denom), stepSize)));
      }
    });
  }

  /** Optimiser state as named tensors (`<param>.m`, `<param>.v`) plus the update count, for resuming. */
  state(): { iterations: number; tensors: Map<string, tf.Tensor> } {
    const tensors = new Map<string, tf.Tensor>();
    for (const name of this.params.keys()) {
      tensors.set(`${name}.m`, this.m.get(name)!);
      tensors.set(`${name}.v`, this.v.get(name)!);
    }
    return { iterations: this.k, tensors };
  }

  /** Restores state written by state() (shapes must match). */
  loadState(iterations: number, tensors: ReadonlyMap<string, tf.Tensor>): void {
    if (!Number.isInteger(iterations) || iterations < 0)
      throw new Error(`AdamW: bad iteration count ${iterations}`);
    for (const name of this.params.keys()) {
      for (const [suffix, store] of [
        ["m", this.m],
        ["v", this.v],
      ] as const) {
        const src = tensors.get(`${name}.${suffix}`);
        if (!src) throw new Error(`AdamW.loadState: missing ${name}.${suffix}`);
        const dst = store.get(name)!;
        if (src.shape.join(",") !== dst.shape.join(",")) {
          throw new Error(
            `AdamW.loadState: ${name}.${suffix} has shape [${src.shape}], expected [${dst.shape}]`,
          );
        }
        dst.assign(src);
      }
    }
    this.k = iterations;
  }

  /** Releases the moment estimates. */
  dispose(): void {
    for (const t of this.m.values()) t.dispose();
    for (const t of this.v.values()) t.dispose();
  }
}
