/** What the mesh's services share: image messages ↔ batches, the process-wide bus, the checkpoint store. */
export { CheckpointStore, checkpointArtifact } from "./checkpoint-store.js";
export { type ImageLimits, imagesFromMessages, imagesToMessages } from "./images.js";
export { closeSharedBus, sharedBus } from "./shared-bus.js";
