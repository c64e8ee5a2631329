import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";
import * as tf from "@tensorflow/tfjs-core";
import { type Info, stockKernel } from "./scope.js";

/** Axes merged into runs of kept or reduced axes, e.g. [N, H·W, G, C/G] with axes [1, 3] → K R K R. */
function mergeAxes(shape: number[], axes: number[]): { size: number; reduced: boolean }[] {
  const dims: { size: number; reduced: boolean }[] = [];
  for (let d = 0; d < shape.length; d++) {
    if (shape[d] === 1) continue;
    const reduced = axes.includes(d);
    const last = dims[dims.length - 1];
    if (last != null && last.reduced === reduced) last.size *= shape[d];
    else dims.push({ size: shape[d], reduced });
  }
  return dims;
}

/**
 * Σ over the rows of x viewed as [rows, cols]: the rows are added into one accumulator row (a
 * contiguous vector add). The stock kernels first transpose the matrix element by element, ~5× slower
 * for the bias gradients ([N·H·W, C] or [rows, out] summed over rows).
 */
function rowSums(x: Float32Array, rows: number, cols: number, out: Float32Array, scale: number): void {
  const acc = new Float64Array(cols);
  let base = 0;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) acc[c] += x[base + c];
    base += cols;
  }
  for (let c = 0; c < cols; c++) out[c] = acc[c] * scale;
}

function makeReduce(name: typeof tf.Sum | typeof tf.Mean) {
  return (args: { inputs: tf.NamedTensorInfoMap; backend: BackendWasm; attrs?: tf.NamedAttrMap }): Info => {
    const { x } = args.inputs as { x: Info };
    const backend = args.backend;
    const axes = tf.util.parseAxisParam(args.attrs?.axis as number | number[], x.shape);
    // Only leading axes reduced over trailing kept ones; elsewhere (e.g. the GroupNorm statistics) the
    // stock kernel is as fast as a JS loop (measured, min of 40 runs on one thread).
    const dims = mergeAxes(x.shape, axes);
    const rowsOverCols = x.dtype === "float32" && dims.length === 2 && dims[0].reduced && !dims[1].reduced;
    if (!rowsOverCols) return stockKernel(name)(args);
    const [outShape, reduceShape] = tf.backend_util.computeOutAndReduceShapes(x.shape, axes);
    const shape =
      args.attrs?.keepDims === true ? tf.backend_util.expandShapeToKeepDim(outShape, axes) : outShape;
    const out = backend.makeOutput(shape, "float32");
    const scale = name === tf.Mean ? 1 / tf.util.sizeFromShape(reduceShape) : 1;
    rowSums(
      backend.typedArrayFromHeap(x) as Float32Array,
      dims[0].size,
      dims[1].size,
      backend.typedArrayFromHeap(out) as Float32Array,
      scale,
    );
    return out;
  };
}

/** Sum for the wasm backend (one pass for sums over leading axes). */
export const sumConfig: tf.KernelConfig = {
  kernelName: tf.Sum,
  backendName: "wasm",
  kernelFunc: makeReduce(tf.Sum) as unknown as tf.KernelFunc,
};

/** Mean for the wasm backend (one pass for means over leading axes). */
export const meanConfig: tf.KernelConfig = {
  kernelName: tf.Mean,
  backendName: "wasm",
  kernelFunc: makeReduce(tf.Mean) as unknown as tf.KernelFunc,
};
