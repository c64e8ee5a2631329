import * as tf from "@tensorflow/tfjs-core";
import { WasmHeap } from "./backend/wasm-heap.js";
import type { Params } from "./params.js";

/**
 * The layout of a parameter map as one flat vector (parameter order, row-major). Optimiser and EMA
 * state live in such vectors so that a step costs a handful of large ops instead of a dozen small
 * ops per parameter.
 */
export class FlatLayout {
  readonly names: string[] = [];
  readonly shapes: number[][] = [];
  readonly offsets: number[] = [];
  readonly sizes: number[] = [];
  readonly total: number;

  constructor(params: Params) {
    let off = 0;
    for (const [name, v] of params) {
      this.names.push(name);
      this.shapes.push([...v.shape]);
      this.offsets.push(off);
      this.sizes.push(v.size);
      off += v.size;
    }
    this.total = off;
  }

  /** Concatenates per-name tensors into one `[total]` vector; missing names count as zeros. */
  flatten(tensors: ReadonlyMap<string, tf.Tensor>): tf.Tensor1D {
    return tf.tidy(() => {
      const parts: tf.Tensor[] = [];
      for (let i = 0; i < this.names.length; i++) {
        const t = tensors.get(this.names[i]);
        if (t && t.size !== this.sizes[i]) {
          throw new Error(
            `${this.names[i]}: got ${t.size} values, expected ${this.sizes[i]} ([${this.shapes[i]}])`,
          );
        }
        parts.push(t ? (t.rank === 1 ? t : tf.reshape(t, [-1])) : tf.zeros([this.sizes[i]]));
      }
      return (parts.length === 1 ? parts[0] : tf.concat(parts, 0)) as tf.Tensor1D;
    });
  }

  /**
   * Copies the parameters' values into `out` (float32, `total` long) in layout order: straight out of the
   * wasm heap where the tensors live there, else through one flat tensor.
   */
  readInto(params: Params, out: Float32Array): void {
    if (out.length !== this.total)
      throw new Error(`readInto: out has ${out.length} values, expected ${this.total}`);
    const heap = WasmHeap.of();
    if (heap) {
      for (let i = 0; i < this.names.length; i++) {
        const t = params.get(this.names[i]);
        if (!t || t.size !== this.sizes[i] || t.dtype !== "float32") {
          throw new Error(`readInto: ${this.names[i]} is missing or not float32 [${this.shapes[i]}]`);
        }
        out.set(heap.f32(heap.ptr(t), this.sizes[i]), this.offsets[i]);
      }
      return;
    }
    const flat = this.flatten(params);
    try {
      out.set(flat.dataSync() as Float32Array);
    } finally {
      flat.dispose();
    }
  }

  /**
   * Writes per-name tensors into `out` (float32, `total` long) in layout order, missing names as zeros, or
   * with `add` adds them to what `out` holds. On the wasm backend the values are read through views of its
   * heap, so a call allocates no copy of the vector (the data-parallel workers write their gradient slot
   * this way every step).
   */
  scatterInto(tensors: ReadonlyMap<string, tf.Tensor>, out: Float32Array, add = false): void {
    if (out.length !== this.total)
      throw new Error(`scatterInto: out has ${out.length} values, expected ${this.total}`);
    const heap = WasmHeap.of();
    if (!heap) {
      const flat = this.flatten(tensors);
      try {
        const v = flat.dataSync() as Float32Array;
        if (add) for (let j = 0; j < v.length; j++) out[j] += v[j];
        else out.set(v);
      } finally {
        flat.dispose();
      }
      return;
    }
    for (let i = 0; i < this.names.length; i++) {
      const t = tensors.get(this.names[i]);
      const off = this.offsets[i];
      const n = this.sizes[i];
      if (!t) {
        if (!add) out.fill(0, off, off + n);
        continue;
      }
      if (t.size !== n || t.dtype !== "float32") {
        throw new Error(
          `scatterInto: ${this.names[i]} has ${t.size} ${t.dtype} values, expected ${n} float32`,
        );
      }
      const v = heap.f32(heap.ptr(t), n);
      if (add) for (let j = 0; j < n; j++) out[off + j] += v[j];
      else out.set(v, off);
    }
  }

  /** Splits a flat vector back into named tensors of the parameters' shapes (new tensors). */
  unflatten(flat: tf.Tensor1D): Map<string, tf.Tensor> {
    if (flat.size !== this.total)
      throw new Error(`flat vector has ${flat.size} values, expected ${this.total}`);
    const parts = tf.split(flat, this.sizes, 0);
    const out = new Map<string, tf.Tensor>();
    for (let i = 0; i < this.names.length; i++) {
      if (this.shapes[i].length === 1) {
        out.set(this.names[i], parts[i]);
      } else {
        out.set(this.names[i], tf.reshape(parts[i], this.shapes[i]));
        parts[i].dispose();
      }
    }
    return out;
  }
}
