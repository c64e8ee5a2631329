import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";
import * as tf from "@tensorflow/tfjs-core";
import { type Info, preferInside, stockKernel } from "./scope.js";

type Typed = Float32Array | Int32Array | Uint8Array;

/**
 * Slice for the wasm backend. The stock kernel first copies the whole input out of the wasm heap
 * (readSync) for every slice, which makes the gradients of concat and split (several slices of one
 * big tensor) quadratic in effect. This one reads the heap in place: one copy of the selected runs.
 */
function slice(args: { inputs: tf.NamedTensorInfoMap; backend: BackendWasm; attrs?: tf.NamedAttrMap }): Info {
  const { x } = args.inputs as { x: Info };
  const backend = args.backend;
  if (x.dtype === "string" || x.dtype === "complex64") {
    const stock = stockKernel(tf.Slice);
    return stock({ inputs: args.inputs, backend, attrs: args.attrs });
  }
  const [begin, size] = tf.slice_util.parseSliceParams(
    x as unknown as tf.TensorInfo,
    args.attrs?.begin as number | number[],
    args.attrs?.size as number | number[],
  );
  tf.slice_util.assertParamsValid(x as unknown as tf.TensorInfo, begin, size);
  // Allocate first: growing the heap may replace the buffer under earlier views.
  const out = backend.makeOutput(size, x.dtype);
  const total = tf.util.sizeFromShape(size);
  if (total === 0) return out;
  const src = backend.typedArrayFromHeap(x) as Typed;
  const dst = backend.typedArrayFromHeap(out) as Typed;
  const rank = x.shape.length;
  const strides = tf.util.computeStrides(x.shape);
  if (tf.slice_util.isSliceContinous(x.shape, begin, size)) {
    const offset = tf.slice_util.computeFlatOffset(begin, strides);
    dst.set(src.subarray(offset, offset + total));
    return out;
  }
  // Copy runs along the last axis; iterate the other axes with an odometer.
  const run = size[rank - 1];
  const runs = total / run;
  const index = new Array<number>(Math.max(rank - 1, 0)).fill(0);
  let written = 0;
  for (let r = 0; r < runs; r++) {
    let offset = begin[rank - 1];
    for (let d = 0; d < rank - 1; d++) offset += (begin[d] + index[d]) * strides[d];
    if (run >= 16) {
      dst.set(src.subarray(offset, offset + run), written);
    } else {
      for (let j = 0; j < run; j++) dst[written + j] = src[offset + j];
    }
    written += run;
    for (let d = rank - 2; d >= 0; d--) {
      index[d]++;
      if (index[d] < size[d]) break;
      index[d] = 0;
    }
  }
  return out;
}

preferInside(tf.Slice, slice);

/** Slice for the wasm backend, reading the heap in place. */
export const sliceConfig: tf.KernelConfig = {
  kernelName: tf.Slice,
  backendName: "wasm",
  kernelFunc: slice as unknown as tf.KernelFunc,
};
