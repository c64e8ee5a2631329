import * as tf from "@tensorflow/tfjs-core";
import type { Rng } from "./rng.js";

/**
 * A model's weights: parameter name → variable, in a fixed creation order. The order is the
 * checkpoint order and the optimiser's order; names are stable across processes.
 */
export type Params = Map<string, tf.Variable>;

/**
 * Creates named variables in order with seeded initialisers (drawn in JS from `rng`, so a seed
 * gives the same weights on every backend).
 */
export class ParamBuilder {
  /** The variables created so far, in creation order. */
  readonly params: Params = new Map();

  /** Shapes of every parameter requested so far, in order (also filled in shapes-only mode). */
  readonly shapes = new Map<string, number[]>();

  /**
   * @param rng source of initial values; null records shapes only and allocates nothing.
   * @param trainable whether the variables are trainable.
   */
  constructor(
    private readonly rng: Rng | null,
    private readonly trainable = true,
  ) {}

  /** PyTorch's default for linear and conv weights: U(−1/√fanIn, 1/√fanIn). */
  fanIn(name: string, shape: number[], fanIn: number): void {
    this.add(name, shape, (rng) => {
      const bound = 1 / Math.sqrt(fanIn);
      const data = new Float32Array(sizeOf(shape));
      for (let i = 0; i < data.length; i++) data[i] = (2 * rng.next() - 1) * bound;
      return tf.tensor(data, shape);
    });
  }

  /** N(0, std²) entries. */
  normal(name: string, shape: number[], std: number): void {
    this.add(name, shape, (rng) => {
      const data = rng.normals(sizeOf(shape));
      for (let i = 0; i < data.length; i++) data[i] *= std;
      return tf.tensor(data, shape);
    });
  }

  /** All zeros (biases, zero-initialised output layers). */
  zeros(name: string, shape: number[]): void {
    this.add(name, shape, () => tf.zeros(shape));
  }

  /** All ones (normalisation scales). */
  ones(name: string, shape: number[]): void {
    this.add(name, shape, () => tf.ones(shape));
  }

  private add(name: string, shape: number[], init: (rng: Rng) => tf.Tensor): void {
    if (this.shapes.has(name)) throw new Error(`ParamBuilder: duplicate parameter name ${name}`);
    this.shapes.set(name, [...shape]);
    if (!this.rng) return;
    const value = init(this.rng);
    // Unnamed tf variables get engine-unique ids, so several models with the same parameter
    // names can live in one process; the map key is the stable name.
    this.params.set(name, tf.variable(value, this.trainable));
    value.dispose();
  }
}

/** Number of elements of a shape. */
export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Total number of scalar parameters. */
export function countParams(params: Params): number {
  let n = 0;
  for (const v of params.values()) n += v.size;
  return n;
}

/** Looks up a parameter, failing loudly with its name when it is missing. */
export function param(params: Params, name: string): tf.Variable {
  const v = params.get(name);
  if (!v) throw new Error(`missing parameter ${name}`);
  return v;
}

/** Disposes every variable of a parameter map. */
export function disposeParams(params: Params): void {
  for (const v of params.values()) v.dispose();
}
