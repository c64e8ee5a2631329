import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";
import * as tf from "@tensorflow/tfjs-core";
import { type Info, stockKernel } from "./scope.js";

type Typed = Float32Array | Int32Array | Uint8Array;

/** Runs shorter than this are copied element by element (one copyWithin call costs more). */
const SHORT_RUN = 64;

/**
 * Concat for the wasm backend. The stock kernel copies each input's run per outer index through a
 * fresh subarray and TypedArray.set (slow on the threaded backend's shared heap); a channel concat of
 * the UNet's skip connections is thousands of short runs. This one copies short runs with an element
 * loop and long ones with copyWithin inside the heap.
 */
function concat(args: {
  inputs: tf.NamedTensorInfoMap;
  backend: BackendWasm;
  attrs?: tf.NamedAttrMap;
}): Info {
  const inputs = args.inputs as unknown as Info[];
  const backend = args.backend;
  if (inputs.length === 0) throw new Error("Concat needs at least one input");
  const dtype = inputs[0].dtype;
  const axis = tf.util.parseAxisParam(args.attrs?.axis as number, inputs[0].shape)[0];
  const nonEmpty = inputs.filter((t) => tf.util.sizeFromShape(t.shape) > 0);
  if (
    dtype === "string" ||
    dtype === "complex64" ||
    nonEmpty.length <= 1 ||
    nonEmpty.some((t) => t.dtype !== dtype)
  ) {
    return stockKernel(tf.Concat)(args);
  }
  tf.backend_util.assertParamsConsistent(
    inputs.map((t) => t.shape),
    axis,
  );
  const outShape = tf.backend_util.computeOutShape(
    inputs.map((t) => t.shape),
    axis,
  );
  const out = backend.makeOutput(outShape, dtype);
  const outer = tf.util.sizeFromShape(outShape.slice(0, axis));
  const inner = nonEmpty.map((t) => tf.util.sizeFromShape(t.shape.slice(axis)));
  const total = inner.reduce((a, b) => a + b, 0);
  const dst = backend.typedArrayFromHeap(out) as Typed;
  const srcs = nonEmpty.map((t) => backend.typedArrayFromHeap(t) as Typed);
  const bytes = tf.util.bytesPerElement(dtype);
  const heap = new Uint8Array(dst.buffer);
  let offset = 0;
  for (let i = 0; i < nonEmpty.length; i++) {
    const src = srcs[i];
    const run = inner[i];
    if (run < SHORT_RUN) {
      for (let b = 0; b < outer; b++) {
        const o = b * total + offset;
        const s = b * run;
        for (let j = 0; j < run; j++) dst[o + j] = src[s + j];
      }
    } else {
      for (let b = 0; b < outer; b++) {
        const from = src.byteOffset + b * run * bytes;
        heap.copyWithin(dst.byteOffset + (b * total + offset) * bytes, from, from + run * bytes);
      }
    }
    offset += run;
  }
  return out;
}

/** Concat for the wasm backend. */
export const concatConfig: tf.KernelConfig = {
  kernelName: tf.Concat,
  backendName: "wasm",
  kernelFunc: concat as unknown as tf.KernelFunc,
};
