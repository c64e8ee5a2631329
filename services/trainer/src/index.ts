/** The Trainer service (idpo.trainer.v1): training jobs (pretraining, improver, SFT, DPO, SPIN) on the bus. */

export { type Example, type ExampleBatch, ExampleStream, type ExampleUnit } from "./example-stream.js";
export {
  createJobManager,
  DEFAULT_SPIN_SAMPLER,
  type JobManager,
  type JobManagerOptions,
  type JobPage,
} from "./job-manager.js";
export { intermediateCheckpointId, type ResolvedJob, resolveSpec } from "./job-spec.js";
export { openPairSources, type PairSource } from "./pair-sources.js";
export { eventToken } from "./run-events.js";
export {
  startJobManager,
  type TrainerEnvConfig,
  type TrainerOverrides,
  trainerDefinition,
  trainerEnvConfig,
  trainerRoutes,
  trainerService,
} from "./trainer-service.js";
export { trainingStateArtifact } from "./training-state.js";
