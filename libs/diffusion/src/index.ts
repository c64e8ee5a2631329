/**
 * @idpo/diffusion: text-conditioned pixel-space diffusion models in tfjs: tokenizer and text
 * encoder, conditional UNet (policy and improver), noise schedules, DDPM/DDIM samplers with
 * classifier-free and double guidance, the Diffusion-DPO / SPIN / improver losses, training
 * utilities and safetensors checkpoints. See README.md.
 */
import "./gradients.js";

export { AdamW, type AdamWConfig } from "./adamw.js";
export { keyBiasValues } from "./attention.js";
export * from "./backend/index.js";
export {
  CHECKPOINT_FORMAT,
  type CheckpointInfo,
  type CheckpointMetadata,
  type CheckpointWeights,
  contentHash,
  decodeCheckpoint,
  decodeCheckpointWeights,
  encodeCheckpoint,
  type LoadedCheckpoint,
  readCheckpointMetadata,
} from "./checkpoint.js";
export { DataOrder } from "./data-order.js";
export { type DataParallelOptions, DataParallelTrainer, sliceBounds } from "./data-parallel-trainer.js";
export {
  assertDpoInputs,
  assertPreferenceBatch,
  type DpoDraws,
  type DpoOptions,
  type DpoPredictions,
  dpoLoss,
  dpoLossFromDraws,
  dpoLossFromPredictions,
  drawDpo,
  type PreferenceBatch,
} from "./dpo-loss.js";
export { Ema } from "./ema.js";
export {
  assertCaptionedBatch,
  type CaptionedBatch,
  drawEpsMse,
  type EpsMseDraws,
  type EpsMseOptions,
  epsMseFromPredictions,
  epsMseLoss,
  epsMseLossFromDraws,
} from "./eps-mse-loss.js";
export { clipByGlobalNorm, globalNorm } from "./grad-clip.js";
export { GRADIENT_KERNELS, registerGradients } from "./gradients.js";
export { classifierFreeGuidance, doubleGuidance } from "./guidance.js";
export {
  assertImageBatch,
  concatImages,
  type ImageBatch,
  imagesToTensor,
  sliceImages,
  tensorToImages,
} from "./image-batch.js";
export {
  assertImproverInputs,
  checkTaskProbabilities,
  DEFAULT_IMPROVER_TASKS,
  drawImprover,
  type ImproverDraws,
  type ImproverLossOptions,
  type ImproverSamplePlan,
  type ImproverTask,
  type ImproverTaskProbabilities,
  improverLoss,
  improverLossFromDraws,
  improverLossFromPredictions,
  planImproverBatch,
} from "./improver-loss.js";
export { codecByName, identityCodec, type LatentCodec } from "./latent-codec.js";
export { disposeLossOutput, type LossOutput } from "./loss-output.js";
export { type LrScheduleConfig, learningRateAt } from "./lr-schedule.js";
export {
  type CreateModelOptions,
  cloneModel,
  copyWeights,
  createModel,
  type DiffusionConfig,
  DiffusionModel,
  improverFromPolicy,
  type ModelKind,
  paramShapes,
  validateConfig,
} from "./model.js";
export {
  assertTimesteps,
  LINEAR_SCHEDULE,
  makeNoiseSchedule,
  type NoiseSchedule,
  type NoiseScheduleConfig,
  SCALED_LINEAR_SCHEDULE,
} from "./noise-schedule.js";
export { addNoise, drawNoise, drawTimesteps, latentSize, perSampleMse } from "./noising.js";
export {
  DEFAULT_PROMPT_DROPOUT,
  dpoObjective,
  improverObjective,
  pretrainObjective,
  sftObjective,
  spinObjective,
} from "./objectives.js";
export { countParams, type Params } from "./params.js";
export { PRESET_NAMES, type PresetName, preset } from "./presets.js";
export { Rng } from "./rng.js";
export {
  decodeSafetensors,
  encodeSafetensors,
  type SafetensorsFile,
  type SafetensorsTensor,
} from "./safetensors.js";
export {
  checkPromptsSeeds,
  type ImproveOptions,
  improve,
  NoiseSource,
  type ResolvedSamplerOptions,
  resolveSamplerOptions,
  SAMPLER_DEFAULTS,
  type SampleOptions,
  type SamplerKind,
  type SamplerOptions,
  sample,
  samplerStep,
  samplingTimesteps,
  stepSigma,
} from "./samplers.js";
export { type SpinBatch, spinLoss } from "./spin-loss.js";
export {
  type ObjectiveDraws,
  type ObjectiveSpec,
  type SplitObjective,
  splitObjective,
} from "./split-objective.js";
export { disposeTextEmbedding, type TextEmbedding, type TextEncoderConfig } from "./text-encoder.js";
export { timestepEmbeddingValues } from "./timestep-embedding.js";
export {
  loadVocabulary,
  PAD_TOKEN,
  parseVocabulary,
  SHAPES_VOCAB_URL,
  shapesVocabulary,
  type TokenBatch,
  Tokenizer,
  UNK_TOKEN,
} from "./tokenizer.js";
export { defaultTrainWorkers } from "./train-workers.js";
export {
  averageMetrics,
  microbatchStream,
  type Objective,
  type StepReport,
  Trainer,
  type TrainerConfig,
  type TrainingDriver,
} from "./trainer.js";
export { poolingWeights, type UNetConfig } from "./unet.js";
