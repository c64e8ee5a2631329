/** The Controller service (idpo.controller.v1): run creation and the driver of iterative DPO runs. */
export {
  type ControllerOverrides,
  controllerDefinition,
  controllerOptionsFromEnv,
  controllerService,
} from "./controller-service.js";
export { type ControllerOptions, DEFAULT_CONTROLLER_OPTIONS, type Peers } from "./driver-deps.js";
export { type PeerCallContext, runTrainerJob } from "./peer-calls.js";
export { policyJobKind, validateRunConfig } from "./run-config.js";
export {
  checkpointIds,
  iterationPrefix,
  jobIds,
  samplesArtifact,
  shardArtifact,
  shardKey,
} from "./run-plan.js";
export { runTraceId } from "./run-tracing.js";
