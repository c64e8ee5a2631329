import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";
import * as tf from "@tensorflow/tfjs-core";
import { type Info, withScope } from "./scope.js";

/**
 * UnsortedSegmentSum for the wasm backend (missing from tfjs-backend-wasm 4.22; tf.gather's gradient
 * needs it). out[s] = Σ_{i: ids[i] = s} data[i] is the product oneHot(ids)ᵀ · data, one XNNPACK
 * matmul; ids outside [0, numSegments) match no row and are dropped, as on the cpu backend.
 */
function unsortedSegmentSum(args: {
  inputs: tf.NamedTensorInfoMap;
  backend: BackendWasm;
  attrs?: tf.NamedAttrMap;
}): Info {
  const { x, segmentIds } = args.inputs as { x: Info; segmentIds: Info };
  const numSegments = args.attrs?.numSegments as number;
  if (!Number.isInteger(numSegments) || numSegments < 0) {
    throw new Error(`UnsortedSegmentSum: numSegments must be a non-negative integer, got ${numSegments}`);
  }
  const idRank = segmentIds.shape.length;
  for (let d = 0; d < idRank; d++) {
    if (segmentIds.shape[d] !== x.shape[d]) {
      throw new Error(
        `UnsortedSegmentSum: segmentIds shape [${segmentIds.shape}] must be a prefix of data shape [${x.shape}]`,
      );
    }
  }
  const rows = tf.util.sizeFromShape(segmentIds.shape);
  const rest = x.shape.slice(idRank);
  const cols = tf.util.sizeFromShape(rest);
  return withScope(args.backend, (s) => {
    const ids =
      segmentIds.dtype === "int32" ? segmentIds : s.run(tf.Cast, { x: segmentIds }, { dtype: "int32" });
    const flatIds = s.reshape(ids, [rows]);
    // The wasm OneHot writes int32 values whatever dtype it is given; cast explicitly.
    const oneHotInt = s.run(
      tf.OneHot,
      { indices: flatIds },
      { depth: numSegments, onValue: 1, offValue: 0, dtype: "int32" },
    );
    const oneHot = s.run(tf.Cast, { x: oneHotInt }, { dtype: "float32" });
    const data = x.dtype === "float32" ? x : s.run(tf.Cast, { x }, { dtype: "float32" });
    const summed = s.matMul2d(s.transpose(oneHot, [1, 0]), s.reshape(data, [rows, cols]));
    const shaped = s.reshape(summed, [numSegments, ...rest]);
    return x.dtype === "float32" ? shaped : s.run(tf.Cast, { x: shaped }, { dtype: x.dtype });
  });
}

/** UnsortedSegmentSum for the wasm backend. */
export const unsortedSegmentSumConfig: tf.KernelConfig = {
  kernelName: tf.UnsortedSegmentSum,
  backendName: "wasm",
  kernelFunc: unsortedSegmentSum as unknown as tf.KernelFunc,
};
