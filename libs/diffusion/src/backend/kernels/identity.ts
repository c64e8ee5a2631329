import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";
import * as tf from "@tensorflow/tfjs-core";
import type { Info } from "./scope.js";

/**
 * Identity for the wasm backend without a copy. The engine clones every tensor a gradient saves for
 * the backward pass (thousands per training step), and the stock wasm Identity copies the data each
 * time. Tensors are immutable, so the clone can share the buffer (reference counted), as the cpu
 * backend's Identity and wasm's own Reshape do.
 */
function identity(args: { inputs: tf.NamedTensorInfoMap; backend: BackendWasm }): Info {
  const { x } = args.inputs as { x: Info };
  args.backend.incRef(x.dataId);
  return { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype };
}

/** Identity for the wasm backend (shares the buffer). */
export const identityConfig: tf.KernelConfig = {
  kernelName: tf.Identity,
  backendName: "wasm",
  kernelFunc: identity as unknown as tf.KernelFunc,
};
