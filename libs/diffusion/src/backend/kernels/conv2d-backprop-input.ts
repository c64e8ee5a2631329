import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";
import * as tf from "@tensorflow/tfjs-core";
import { type Info, type Scope, withScope } from "./scope.js";

interface Attrs {
  strides: [number, number] | number;
  pad: "valid" | "same" | number | tf.backend_util.ExplicitPadding;
  dataFormat: "NHWC" | "NCHW";
  dimRoundingMode?: "floor" | "round" | "ceil";
  inputShape: [number, number, number, number];
}

/**
 * The filter rotated by 180° in space with its in/out channels swapped: out[a,b,o,c] =
 * w[kh−1−a, kw−1−b, c, o]. One pass in JS (the stock wasm Reverse takes ~1 ms on a 3×3×48×48 filter).
 */
function flipFilter(backend: BackendWasm, filter: Info): Info {
  const [kh, kw, ci, co] = filter.shape;
  const out = backend.makeOutput([kh, kw, co, ci], "float32");
  const src = backend.typedArrayFromHeap(filter) as Float32Array;
  const dst = backend.typedArrayFromHeap(out) as Float32Array;
  let o = 0;
  for (let a = 0; a < kh; a++) {
    for (let b = 0; b < kw; b++) {
      const tap = ((kh - 1 - a) * kw + (kw - 1 - b)) * ci * co;
      for (let oc = 0; oc < co; oc++) {
        for (let c = 0; c < ci; c++) dst[o++] = src[tap + c * co + oc];
      }
    }
  }
  return out;
}

/**
 * dx = the forward convolution's transpose, computed as one XNNPACK Conv2D (the stock wasm kernel is a
 * scalar loop): insert s − 1 zeros between dy's pixels, pad by k − 1 − p, and correlate with the filter
 * flipped in space and with its in/out channels swapped. 1×1 stride-1 unpadded filters are a plain
 * matmul dy·Wᵀ.
 */
function conv2DBackpropInput(args: {
  inputs: tf.NamedTensorInfoMap;
  backend: BackendWasm;
  attrs?: tf.NamedAttrMap;
}): Info {
  const { dy, filter } = args.inputs as { dy: Info; filter: Info };
  const info = checkedConvInfo(dy, filter, args.attrs as unknown as Attrs);
  return withScope(args.backend, (s) =>
    isPointwise(info) ? pointwiseBackprop(s, dy, filter, info) : transposedConv(s, dy, filter, info),
  );
}

/** A 1×1 stride-1 unpadded filter. */
function isPointwise(info: tf.backend_util.Conv2DInfo): boolean {
  const { filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw, padInfo: pad } = info;
  return kh === 1 && kw === 1 && sh === 1 && sw === 1 && pad.top === 0 && pad.left === 0;
}

/** The forward convolution's geometry, checked against dy (NHWC only). */
function checkedConvInfo(dy: Info, filter: Info, attrs: Attrs): tf.backend_util.Conv2DInfo {
  if (attrs.dataFormat !== "NHWC") {
    throw new Error(`idpo wasm Conv2DBackpropInput supports NHWC only, got dataFormat ${attrs.dataFormat}`);
  }
  const info = tf.backend_util.computeConv2DInfo(
    attrs.inputShape,
    filter.shape as [number, number, number, number],
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    "channelsLast",
  );
  const { batchSize: n, outChannels: co, outHeight: ho, outWidth: wo } = info;
  if (dy.shape[0] !== n || dy.shape[1] !== ho || dy.shape[2] !== wo || dy.shape[3] !== co) {
    throw new Error(
      `idpo wasm Conv2DBackpropInput: dy shape [${dy.shape}] does not match the conv output [${n},${ho},${wo},${co}]`,
    );
  }
  return info;
}

/** dx = dy·Wᵀ for a 1×1 stride-1 unpadded filter. */
function pointwiseBackprop(s: Scope, dy: Info, filter: Info, info: tf.backend_util.Conv2DInfo): Info {
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: ci, outChannels: co } = info;
  const dy2 = s.reshape(dy, [n * h * w, co]);
  const wT = s.transpose(s.reshape(filter, [ci, co]), [1, 0]);
  return s.reshape(s.matMul2d(dy2, wT), [n, h, w, ci]);
}

/** The general case: the zero-inserted dy, padded or cropped, correlated with the flipped filter. */
function transposedConv(s: Scope, dy: Info, filter: Info, info: tf.backend_util.Conv2DInfo): Info {
  const { inHeight: h, inWidth: w, filterHeight: kh, filterWidth: kw } = info;
  const pad = info.padInfo;
  const flipped = flipFilter(s.backend, filter);
  s.track(flipped);
  const { dyz, zh, zw } = zeroInserted(s, dy, info);
  // The padded, zero-inserted dy must span h + kh − 1 rows, starting kh − 1 − pT rows before dy.
  const top = kh - 1 - pad.top;
  const left = kw - 1 - pad.left;
  const bottom = h + kh - 1 - top - zh;
  const right = w + kw - 1 - left - zw;
  const cropped = s.padOrCrop(dyz, [
    [0, 0],
    [Math.min(0, top), Math.min(0, bottom)],
    [Math.min(0, left), Math.min(0, right)],
    [0, 0],
  ]);
  return s.run(
    tf.Conv2D,
    { x: cropped, filter: flipped },
    {
      strides: [1, 1],
      dilations: [1, 1],
      pad: [
        [0, 0],
        [Math.max(0, top), Math.max(0, bottom)],
        [Math.max(0, left), Math.max(0, right)],
        [0, 0],
      ],
      dataFormat: "NHWC",
    },
  );
}

/** dy with s − 1 zeros after each pixel along each strided axis (dy itself at stride 1), and its height and width. */
function zeroInserted(
  s: Scope,
  dy: Info,
  info: tf.backend_util.Conv2DInfo,
): { dyz: Info; zh: number; zw: number } {
  const {
    batchSize: n,
    outChannels: co,
    strideHeight: sh,
    strideWidth: sw,
    outHeight: ho,
    outWidth: wo,
  } = info;
  if (sh === 1 && sw === 1) return { dyz: dy, zh: ho, zw: wo };
  // View dy as [n, ho, 1, wo, 1, co], pad the unit axes to the strides, and drop the trailing zeros of the
  // last pixel (by cropping in transposedConv).
  const six = s.reshape(dy, [n, ho, 1, wo, 1, co]);
  const spread = s.run(
    tf.PadV2,
    { x: six },
    {
      paddings: [
        [0, 0],
        [0, 0],
        [0, sh - 1],
        [0, 0],
        [0, sw - 1],
        [0, 0],
      ],
      constantValue: 0,
    },
  );
  const zh = ho * sh;
  const zw = wo * sw;
  return { dyz: s.reshape(spread, [n, zh, zw, co]), zh, zw };
}

/** Conv2DBackpropInput for the wasm backend, replacing the stock scalar loop. */
export const conv2DBackpropInputConfig: tf.KernelConfig = {
  kernelName: tf.Conv2DBackpropInput,
  backendName: "wasm",
  kernelFunc: conv2DBackpropInput as unknown as tf.KernelFunc,
};
