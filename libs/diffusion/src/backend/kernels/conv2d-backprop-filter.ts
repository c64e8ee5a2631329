import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";
import * as tf from "@tensorflow/tfjs-core";
import { type Info, withScope } from "./scope.js";

interface Attrs {
  strides: [number, number] | number;
  pad: "valid" | "same" | number | tf.backend_util.ExplicitPadding;
  dataFormat: "NHWC" | "NCHW";
  dimRoundingMode?: "floor" | "round" | "ceil";
  filterShape: [number, number, number, number];
}

/**
 * dW[a,b,ci,co] = Σ_{n,i,j} x[n, i·s + a − pT, j·s + b − pL, ci] · dy[n,i,j,co].
 *
 * That is one XNNPACK convolution: take ci as the batch and n as the input channel (x → [Ci,H,W,N]), use
 * dy as the filter (dy → [Ho,Wo,N,Co]) with dilation s and stride 1, and the result [Ci,kh,kw,Co] is dW up
 * to a transpose. 1×1 stride-1 unpadded filters are a plain matmul xᵀ·dy.
 */
function conv2DBackpropFilter(args: {
  inputs: tf.NamedTensorInfoMap;
  backend: BackendWasm;
  attrs?: tf.NamedAttrMap;
}): Info {
  const { x, dy } = args.inputs as { x: Info; dy: Info };
  const attrs = args.attrs as unknown as Attrs;
  if (attrs.dataFormat !== "NHWC") {
    throw new Error(`idpo wasm Conv2DBackpropFilter supports NHWC only, got dataFormat ${attrs.dataFormat}`);
  }
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    attrs.filterShape,
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    "channelsLast",
  );
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: ci, outChannels: co } = info;
  const {
    filterHeight: kh,
    filterWidth: kw,
    strideHeight: sh,
    strideWidth: sw,
    outHeight: ho,
    outWidth: wo,
  } = info;
  if (dy.shape[1] !== ho || dy.shape[2] !== wo || dy.shape[3] !== co || dy.shape[0] !== n) {
    throw new Error(
      `idpo wasm Conv2DBackpropFilter: dy shape [${dy.shape}] does not match the conv output [${n},${ho},${wo},${co}]`,
    );
  }
  return withScope(args.backend, (s) => {
    const pad = info.padInfo;
    if (kh === 1 && kw === 1 && sh === 1 && sw === 1 && pad.top === 0 && pad.left === 0) {
      const x2 = s.reshape(x, [n * h * w, ci]);
      const dy2 = s.reshape(dy, [n * h * w, co]);
      const dw = s.matMul2d(s.transpose(x2, [1, 0]), dy2);
      return s.reshape(dw, [1, 1, ci, co]);
    }
    const xT = s.transpose(x, [3, 1, 2, 0]);
    const dyT = s.transpose(dy, [1, 2, 0, 3]);
    // The padded input must span exactly kh + (ho − 1)·sh rows so that the output has kh rows.
    const bottom = kh + (ho - 1) * sh - h - pad.top;
    const right = kw + (wo - 1) * sw - w - pad.left;
    // Crop where the forward conv never read (negative bottom/right); XNNPACK pads the rest itself.
    const xc = s.padOrCrop(xT, [
      [0, 0],
      [0, Math.min(0, bottom)],
      [0, Math.min(0, right)],
      [0, 0],
    ]);
    const conv = s.run(
      tf.Conv2D,
      { x: xc, filter: dyT },
      {
        strides: [1, 1],
        dilations: [sh, sw],
        pad: [
          [0, 0],
          [pad.top, Math.max(0, bottom)],
          [pad.left, Math.max(0, right)],
          [0, 0],
        ],
        dataFormat: "NHWC",
      },
    );
    return s.transpose(conv, [1, 2, 0, 3]);
  });
}

/** Conv2DBackpropFilter for the wasm backend (missing from tfjs-backend-wasm 4.22). */
export const conv2DBackpropFilterConfig: tf.KernelConfig = {
  kernelName: tf.Conv2DBackpropFilter,
  backendName: "wasm",
  kernelFunc: conv2DBackpropFilter as unknown as tf.KernelFunc,
};
