import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";
import * as tf from "@tensorflow/tfjs-core";
import { type Info, preferInside, stockKernel } from "./scope.js";

type Typed = Float32Array | Int32Array | Uint8Array;

/** Tile side of the blocked transpose: both the read and the write side stay within a few cache lines. */
const TILE = 16;

/**
 * Drops unit axes and merges input axes that stay adjacent and in order in the output, so that e.g.
 * [32,16,16,48] with perm [3,1,2,0] becomes [32,256,48] with perm [2,1,0].
 */
export function canonicalTranspose(shape: number[], perm: number[]): { shape: number[]; perm: number[] } {
  const kept = perm.filter((axis) => shape[axis] !== 1);
  const groups: number[][] = [];
  for (const axis of kept) {
    const last = groups[groups.length - 1];
    if (last != null && last[last.length - 1] + 1 === axis) last.push(axis);
    else groups.push([axis]);
  }
  // Groups are listed in output order; number them by their position in the input.
  const byInput = [...groups].sort((a, b) => a[0] - b[0]);
  const newShape = byInput.map((g) => g.reduce((p, axis) => p * shape[axis], 1));
  const newPerm = groups.map((g) => byInput.indexOf(g));
  return { shape: newShape, perm: newPerm };
}

/**
 * out = transpose(x, perm) for a canonical (shape, perm) whose last output axis is not the last input
 * axis: a gather in 16×16 tiles over the two axes that hold the input's and the output's contiguous
 * runs, the remaining axes iterated as an odometer.
 */
function blockedTranspose(src: Typed, dst: Typed, shape: number[], perm: number[]): void {
  const rank = shape.length;
  const inStride = tf.util.computeStrides(shape);
  inStride.push(1);
  const outShape = perm.map((axis) => shape[axis]);
  const outStride = tf.util.computeStrides(outShape);
  outStride.push(1);
  // Output axis holding the input's innermost axis, and the input axis feeding the output's innermost.
  const q = perm.indexOf(rank - 1);
  const a = perm[rank - 1];
  const qSize = outShape[q];
  const aSize = outShape[rank - 1];
  const qOutStride = outStride[q];
  const aInStride = inStride[a];
  const outer: number[] = [];
  for (let k = 0; k < rank; k++) if (k !== q && k !== rank - 1) outer.push(k);
  const index = new Array<number>(outer.length).fill(0);
  let combos = 1;
  for (const k of outer) combos *= outShape[k];
  for (let c = 0; c < combos; c++) {
    let inBase = 0;
    let outBase = 0;
    for (let j = 0; j < outer.length; j++) {
      inBase += index[j] * inStride[perm[outer[j]]];
      outBase += index[j] * outStride[outer[j]];
    }
    for (let q0 = 0; q0 < qSize; q0 += TILE) {
      const q1 = Math.min(q0 + TILE, qSize);
      for (let a0 = 0; a0 < aSize; a0 += TILE) {
        const a1 = Math.min(a0 + TILE, aSize);
        for (let qq = q0; qq < q1; qq++) {
          const o = outBase + qq * qOutStride;
          const i = inBase + qq;
          for (let aa = a0; aa < a1; aa++) dst[o + aa] = src[i + aa * aInStride];
        }
      }
    }
    for (let j = outer.length - 1; j >= 0; j--) {
      index[j]++;
      if (index[j] < outShape[outer[j]]) break;
      index[j] = 0;
    }
  }
}

/**
 * Transpose for the wasm backend. The stock kernel transposes a matrix element by element (a
 * [2048,48] transpose takes ~10 ns per element), and every linear layer's weight gradient transposes
 * its input matrix. This one transposes matrices (after merging axes that move together) in tiles and
 * leaves every other permutation, where the stock kernel is fast, to it.
 */
function transpose(args: {
  inputs: tf.NamedTensorInfoMap;
  backend: BackendWasm;
  attrs?: tf.NamedAttrMap;
}): Info {
  const { x } = args.inputs as { x: Info };
  const backend = args.backend;
  const perm = args.attrs?.perm as number[];
  if (x.dtype === "string" || x.dtype === "complex64") return stockKernel(tf.Transpose)(args);
  const outShape = perm.map((axis) => x.shape[axis]);
  const canon = canonicalTranspose(x.shape, perm);
  const r = canon.perm.length;
  if (r === 0 || canon.perm.every((axis, i) => axis === i)) {
    // A pure relabelling of unit axes: share the buffer, as Reshape does.
    backend.incRef(x.dataId);
    return { dataId: x.dataId, shape: outShape, dtype: x.dtype };
  }
  // The stock kernel is fast for every layout but one: a plain matrix transpose (it gathers element by
  // element, ~10 ns each); batched or higher-rank permutations stay with it.
  if (r !== 2) return stockKernel(tf.Transpose)(args);
  const out = backend.makeOutput(outShape, x.dtype);
  blockedTranspose(
    backend.typedArrayFromHeap(x) as Typed,
    backend.typedArrayFromHeap(out) as Typed,
    canon.shape,
    canon.perm,
  );
  return out;
}

preferInside(tf.Transpose, transpose as never);

/** Transpose for the wasm backend (tiled when the innermost axis moves). */
export const transposeConfig: tf.KernelConfig = {
  kernelName: tf.Transpose,
  backendName: "wasm",
  kernelFunc: transpose as unknown as tf.KernelFunc,
};
