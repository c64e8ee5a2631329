import * as tf from "@tensorflow/tfjs-core";
import { batchMatMulConfig } from "./kernels/batch-matmul.js";
import { concatConfig } from "./kernels/concat.js";
import { conv2DBackpropFilterConfig } from "./kernels/conv2d-backprop-filter.js";
import { conv2DBackpropInputConfig } from "./kernels/conv2d-backprop-input.js";
import { groupNormActConfig, groupNormActGradConfig } from "./kernels/group-norm-act.js";
import { identityConfig } from "./kernels/identity.js";
import { meanConfig, sumConfig } from "./kernels/reduce.js";
import { captureStock } from "./kernels/scope.js";
import { sliceConfig, splitVConfig } from "./kernels/slice.js";
import { transposeConfig } from "./kernels/transpose.js";
import { unsortedSegmentSumConfig } from "./kernels/unsorted-segment-sum.js";

/** The kernels idpo registers on (or replaces in) the wasm backend. */
const CONFIGS: tf.KernelConfig[] = [
  conv2DBackpropFilterConfig,
  conv2DBackpropInputConfig,
  batchMatMulConfig,
  sliceConfig,
  splitVConfig,
  unsortedSegmentSumConfig,
  identityConfig,
  sumConfig,
  meanConfig,
  transposeConfig,
  concatConfig,
  groupNormActConfig,
  groupNormActGradConfig,
];

let registered = false;

/**
 * Registers idpo's wasm kernels (idempotent) and returns their names. Stock kernels they replace are
 * captured first so that the replacements can still call them.
 */
export function registerWasmKernels(): string[] {
  if (!registered) {
    for (const config of CONFIGS) {
      captureStock(config.kernelName);
      if (tf.getKernel(config.kernelName, "wasm") != null) tf.unregisterKernel(config.kernelName, "wasm");
      tf.registerKernel(config);
    }
    registered = true;
  }
  return CONFIGS.map((c) => c.kernelName);
}
