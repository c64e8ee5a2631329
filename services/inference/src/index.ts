/**
 * @idpo/inference: the model-serving sidecar. A checkpoint's text encoder and UNet become ONNX graphs
 * (built from its architecture config and safetensors weights) run by ONNX Runtime, with the diffusion
 * library's samplers reproduced on the host around them, served as idpo.inference.v1.InferenceService.
 */
export type { Weights } from "./graph-layers.js";
export {
  createInferenceServer,
  type FollowKind,
  type InferenceConfig,
  type InferenceDeps,
  type InferenceOverrides,
  type InferenceServer,
  inferenceConfigFromEnv,
  inferenceDefinition,
  inferenceService,
} from "./inference-service.js";
export { type CacheStats, ModelCache, type ServedLease } from "./model-cache.js";
export { type EncodedGraph, ONNX_OPSET } from "./onnx-graph.js";
export {
  buildModelGraphs,
  type ModelGraphs,
  OrtDiffusionModel,
  type OrtOptions,
  type OrtTextEmbedding,
} from "./ort-model.js";
export { hostSamplerStep, ortImprove, ortSample } from "./ort-sampler.js";
