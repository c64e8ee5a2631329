import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";
import * as tf from "@tensorflow/tfjs-core";
import { type Info, stockKernel } from "./scope.js";

/**
 * Sum of float32 `x` over `axes` in one pass over the input (any axes; neighbouring kept or reduced
 * axes are merged and the innermost run is added as a vector or summed as a scalar). Accumulates in
 * float64.
 */
function reduceSum(x: Float32Array, shape: number[], axes: number[]): Float64Array {
  // Merge neighbouring axes that are both kept or both reduced.
  const dims: { size: number; reduced: boolean }[] = [];
  for (let d = 0; d < shape.length; d++) {
    const reduced = axes.includes(d);
    const last = dims[dims.length - 1];
    if (last != null && last.reduced === reduced) last.size *= shape[d];
    else dims.push({ size: shape[d], reduced });
  }
  let outSize = 1;
  for (const d of dims) if (!d.reduced) outSize *= d.size;
  const acc = new Float64Array(outSize);
  const rank = dims.length;
  // Output stride of each merged axis (0 for reduced ones).
  const outStride = new Array<number>(rank).fill(0);
  let s = 1;
  for (let d = rank - 1; d >= 0; d--) {
    if (!dims[d].reduced) {
      outStride[d] = s;
      s *= dims[d].size;
    }
  }
  const inner = dims[rank - 1];
  const run = inner.size;
  const runs = x.length / run;
  const index = new Array<number>(rank).fill(0);
  let i = 0;
  let o = 0;
  for (let r = 0; r < runs; r++) {
    if (inner.reduced) {
      let sum = 0;
      for (let j = 0; j < run; j++) sum += x[i + j];
      acc[o] += sum;
    } else {
      for (let j = 0; j < run; j++) acc[o + j] += x[i + j];
    }
    i += run;
    for (let d = rank - 2; d >= 0; d--) {
      index[d]++;
      o += outStride[d];
      if (index[d] < dims[d].size) break;
      o -= outStride[d] * dims[d].size;
      index[d] = 0;
    }
  }
  return acc;
}

function makeReduce(name: typeof tf.Sum | typeof tf.Mean) {
  return (args: { inputs: tf.NamedTensorInfoMap; backend: BackendWasm; attrs?: tf.NamedAttrMap }): Info => {
    const { x } = args.inputs as { x: Info };
    const backend = args.backend;
    const axes = tf.util.parseAxisParam(args.attrs?.axis as number | number[], x.shape);
    // The stock kernels transpose the reduced axes inwards first; that is fast for higher ranks but a
    // slow element-by-element gather for a matrix, so only matrices reduced over rows come here (the
    // bias gradients of every linear layer: Σ over rows of [rows, out]).
    const rowsOfMatrix = x.shape.length === 2 && axes.length === 1 && axes[0] === 0;
    if (x.dtype !== "float32" || !rowsOfMatrix || tf.util.sizeFromShape(x.shape) === 0) {
      return stockKernel(name)(args);
    }
    const [outShape, reduceShape] = tf.backend_util.computeOutAndReduceShapes(x.shape, axes);
    const shape =
      args.attrs?.keepDims === true ? tf.backend_util.expandShapeToKeepDim(outShape, axes) : outShape;
    const out = backend.makeOutput(shape, "float32");
    const acc = reduceSum(backend.typedArrayFromHeap(x) as Float32Array, x.shape, axes);
    const vals = backend.typedArrayFromHeap(out) as Float32Array;
    const scale = name === tf.Mean ? 1 / tf.util.sizeFromShape(reduceShape) : 1;
    for (let k = 0; k < acc.length; k++) vals[k] = acc[k] * scale;
    return out;
  };
}

/** Sum for the wasm backend (one pass over a matrix's rows instead of transpose + reduce). */
export const sumConfig: tf.KernelConfig = {
  kernelName: tf.Sum,
  backendName: "wasm",
  kernelFunc: makeReduce(tf.Sum) as unknown as tf.KernelFunc,
};

/** Mean for the wasm backend (one pass over a matrix's rows instead of transpose + reduce). */
export const meanConfig: tf.KernelConfig = {
  kernelName: tf.Mean,
  backendName: "wasm",
  kernelFunc: makeReduce(tf.Mean) as unknown as tf.KernelFunc,
};
