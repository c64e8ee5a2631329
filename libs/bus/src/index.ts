/**
 * @idpo/bus: run events, the pair-shard work queue, run state and artifacts behind one small set of
 * interfaces, over NATS JetStream (when IDPO_NATS_URL is set) or an embedded directory-backed backend with
 * the same semantics. See libs/bus/README.md.
 */
export { BusConfigError, MalformedMessageError, RevisionConflictError } from "./errors.js";
export { type BusDefinitions, type BusLimits, busDefinitions, DEFAULT_LIMITS } from "./nats/definitions.js";
export { type OpenBusOptions, openBus } from "./open-bus.js";
export { decodeReport, reportSubject } from "./reports.js";
export {
  decodeRunEvent,
  publishRunEvent,
  type RunEventCase,
  type RunEventSubscribeOptions,
  runEventKind,
  runEventSubject,
  subscribeRunEvents,
} from "./run-events.js";
export { consumeShards, decodePairShardTask, enqueueShard, shardFailedEventId } from "./shard-queue.js";
export { EVENTS_ROOT, REPORTS_ROOT, subjectMatches, WORK_ROOT } from "./subjects.js";
export type {
  ArtifactInfo,
  ArtifactStore,
  Bus,
  ConsumeOptions,
  Delivery,
  DeliveryHandler,
  DeliveryPolicy,
  EventLog,
  Headers,
  PublishAck,
  PublishOptions,
  PutOptions,
  StartPosition,
  StateChange,
  StateEntry,
  StateStore,
  StateWatch,
  StopOptions,
  SubscribeOptions,
  Subscription,
  TerminationHooks,
  TerminationReason,
  TerminationReport,
  WatchOptions,
  WorkQueue,
} from "./types.js";
