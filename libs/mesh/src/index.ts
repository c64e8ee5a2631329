/** What the mesh's services share: image messages ↔ batches, the process-wide bus, the checkpoint store. */
export { CheckpointStore, checkpointArtifact } from "./checkpoint-store.js";
export { type ImageLimits, imagesFromMessages, imagesToMessages } from "./images.js";
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
  type CheckpointSubscriptionOptions,
  decodeRunEvent,
  publishRunEvent,
  type RunEventKind,
  replicaConsumerName,
  subscribeCheckpointPublished,
} from "./run-events.js";
export { closeSharedBus, sharedBus } from "./shared-bus.js";
