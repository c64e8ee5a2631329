import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";
import * as tf from "@tensorflow/tfjs-core";
import { type Info, preferInside, stockKernel } from "./scope.js";

type Typed = Float32Array | Int32Array | Uint8Array;

/**
 * Slice for the wasm backend. The stock kernel first copies the whole input out of the wasm heap
 * (readSync) for every slice, which makes the gradients of concat and split (several slices of one
 * big tensor) quadratic in effect. This one copies only the selected runs, inside the heap.
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
  return sliceInfo(backend, x, begin, size);
}

/**
 * Copies the [begin, begin + size) box of `x` into a new tensor with memmoves inside the wasm heap.
 * (On the threaded backend the heap is a SharedArrayBuffer, where TypedArray slice/set copies are an
 * order of magnitude slower than copyWithin.)
 */
export function sliceInfo(backend: BackendWasm, x: Info, begin: number[], size: number[]): Info {
  // Allocate first: growing the heap may replace the buffer under earlier views.
  const out = backend.makeOutput(size, x.dtype);
  const total = tf.util.sizeFromShape(size);
  if (total === 0) return out;
  const bytes = tf.util.bytesPerElement(x.dtype);
  const src = (backend.typedArrayFromHeap(x) as Typed).byteOffset;
  const dst = (backend.typedArrayFromHeap(out) as Typed).byteOffset;
  const heap = new Uint8Array((backend.typedArrayFromHeap(out) as Typed).buffer);
  const rank = x.shape.length;
  const strides = tf.util.computeStrides(x.shape);
  if (tf.slice_util.isSliceContinous(x.shape, begin, size)) {
    const offset = tf.slice_util.computeFlatOffset(begin, strides) * bytes;
    heap.copyWithin(dst, src + offset, src + offset + total * bytes);
    return out;
  }
  // Contiguous runs span the innermost partial axis and every full axis inside it.
  let inner = rank - 1;
  while (inner > 0 && size[inner] === x.shape[inner]) inner--;
  const runElems = size[inner] * (inner + 1 < rank ? strides[inner] : 1);
  const runs = total / runElems;
  const index = new Array<number>(inner).fill(0);
  let written = dst;
  if (runElems < 32) {
    // Short runs: an element loop beats one copyWithin call per run.
    const from = backend.typedArrayFromHeap(x) as Typed;
    const to = backend.typedArrayFromHeap(out) as Typed;
    let o = 0;
    for (let r = 0; r < runs; r++) {
      let offset = begin[inner] * (inner + 1 < rank ? strides[inner] : 1);
      for (let d = 0; d < inner; d++) offset += (begin[d] + index[d]) * strides[d];
      for (let j = 0; j < runElems; j++) to[o + j] = from[offset + j];
      o += runElems;
      for (let d = inner - 1; d >= 0; d--) {
        index[d]++;
        if (index[d] < size[d]) break;
        index[d] = 0;
      }
    }
    return out;
  }
  const run = runElems * bytes;
  for (let r = 0; r < runs; r++) {
    let offset = begin[inner] * (inner + 1 < rank ? strides[inner] : 1);
    for (let d = 0; d < inner; d++) offset += (begin[d] + index[d]) * strides[d];
    const from = src + offset * bytes;
    heap.copyWithin(written, from, from + run);
    written += run;
    for (let d = inner - 1; d >= 0; d--) {
      index[d]++;
      if (index[d] < size[d]) break;
      index[d] = 0;
    }
  }
  return out;
}

/**
 * SplitV for the wasm backend: the stock kernel slices with the stock Slice, copying the whole input
 * out of the heap once per output (a split of all ~10⁶ weights into ~300 tensors took seconds).
 */
function splitV(args: {
  inputs: tf.NamedTensorInfoMap;
  backend: BackendWasm;
  attrs?: tf.NamedAttrMap;
}): Info[] {
  const { x } = args.inputs as { x: Info };
  if (x.dtype === "string" || x.dtype === "complex64") {
    return stockKernel(tf.SplitV)({
      inputs: args.inputs,
      backend: args.backend,
      attrs: args.attrs,
    }) as unknown as Info[];
  }
  const axis = tf.util.parseAxisParam(args.attrs?.axis as number, x.shape)[0];
  const sizes = tf.backend_util.prepareSplitSize(
    x as unknown as tf.Tensor,
    args.attrs?.numOrSizeSplits as number | number[],
    axis,
  );
  const begin = new Array<number>(x.shape.length).fill(0);
  const outs: Info[] = [];
  for (const s of sizes) {
    const size = [...x.shape];
    size[axis] = s;
    outs.push(sliceInfo(args.backend, x, [...begin], size));
    begin[axis] += s;
  }
  return outs;
}

/** SplitV for the wasm backend, built on the in-heap slice. */
export const splitVConfig: tf.KernelConfig = {
  kernelName: tf.SplitV,
  backendName: "wasm",
  kernelFunc: splitV as unknown as tf.KernelFunc,
};

preferInside(tf.Slice, slice);

/** Slice for the wasm backend, reading the heap in place. */
export const sliceConfig: tf.KernelConfig = {
  kernelName: tf.Slice,
  backendName: "wasm",
  kernelFunc: slice as unknown as tf.KernelFunc,
};
