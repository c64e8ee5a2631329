/**
 * What the mesh's services share: image messages ↔ batches, the process-wide bus, the checkpoint store and
 * the trainer contract (training-config defaults and limits, data URIs, model presets, job kinds).
 */
export {
  checkpointRef,
  fetchCheckpoint,
  loadDiffusionCheckpoint,
  unreadableCheckpoint,
  wrongModelKind,
} from "./checkpoint-loader.js";
export { CheckpointStore, checkpointArtifact } from "./checkpoint-store.js";
export {
  type BatcherLimits,
  type BatcherStats,
  type BatchRunner,
  DynamicBatcher,
} from "./dynamic-batcher.js";
export { type ImageLimits, imagesFromMessages, imagesToMessages } from "./images.js";
export {
  createModelHost,
  createServiceModelHost,
  type ModelHost,
  type ModelHostOptions,
  type ModelServiceDeps,
} from "./model-host.js";
export { type LoadedModel, type ModelLease, ModelSlot } from "./model-slot.js";
export {
  decodePairShard,
  encodePairShard,
  float16BitsToFloat32,
  float32ToFloat16Bits,
  PAIR_SHARD_VERSION,
  type PairPixelDtype,
  type PairShard,
  type PairShardInput,
  type PairShardRecordInput,
  pairShardArtifact,
  pairShardRecords,
} from "./pair-shard.js";
export {
  PAIR_SHARD_FORMAT,
  type PairShardMeta,
  pairShardMeta,
  readPairShardMeta,
} from "./pair-shard-meta.js";
export {
  PRETRAINED,
  PRETRAINED_BASE_ID,
  PRETRAINED_BASE_SEED,
  PRETRAINED_DATASET,
  PRETRAINED_IMPROVER_ID,
  type PretrainedCheckpoint,
  pretrainedAvailable,
  seedPretrained,
  startFromPretrained,
} from "./pretrained.js";
export {
  type CheckpointSubscriptionOptions,
  replicaConsumerName,
  subscribeCheckpointPublished,
} from "./run-events.js";
export {
  type EngineFromEnvOptions,
  INFERENCE_MODES,
  type InferenceMode,
  inProcessEngine,
  type SamplingEngine,
  type ServedModel,
  type SidecarRetry,
  samplingEngineFromEnv,
  sidecarEngine,
} from "./sampling-engine.js";
export { closeSharedBus, sharedBus } from "./shared-bus.js";
export { checkRange, invalidField } from "./trainer-contract/contract-error.js";
export {
  type DataUri,
  MAX_SHAPES_PAIRS,
  type PairWindow,
  parseDataUri,
  SHAPES_SIZE_RANGE,
  windowedDataUri,
} from "./trainer-contract/data-uri.js";
export {
  checkJobKind,
  isPreferenceKind,
  kindUses,
  OBJECTIVE_SETTINGS,
  type ObjectiveSetting,
  rejectUnusedSettings,
} from "./trainer-contract/job-kinds.js";
export {
  DEFAULT_MODEL_PRESET,
  MODEL_PRESET_IMAGE_SIZES,
  MODEL_PRESETS,
  type ModelPresetName,
  resolveModelPreset,
} from "./trainer-contract/model-presets.js";
export {
  resolveTrainingConfig,
  TRAINING_DEFAULTS,
  TRAINING_LIMITS,
  type TrainingDefaults,
} from "./trainer-contract/training-config.js";
