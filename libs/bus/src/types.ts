import type { Context } from "@opentelemetry/api";

/** Message headers (name → value). Names are matched case-insensitively when read back. */
export type Headers = Record<string, string>;

/** Options of a publish to the event log or an enqueue to the work queue. */
export interface PublishOptions {
  /** De-duplication id (sent as `Nats-Msg-Id`): a second publish with the same id inside the
   * stream's duplicate window is acknowledged but not stored again. */
  msgId: string;
  /** Extra headers; the active OpenTelemetry context is added as `traceparent`/`tracestate`. */
  headers?: Headers;
}

/** What the store answered to a publish. */
export interface PublishAck {
  /** Stream sequence of the stored message (of the original one for a duplicate). */
  seq: number;
  /** True when the msgId was already stored inside the duplicate window and nothing new was stored. */
  duplicate: boolean;
}

/** One delivery of a stored message to a handler. */
export interface Delivery {
  /** Logical subject, e.g. `idpo.events.run-1.pairs_ready` (without any name prefix). */
  subject: string;
  /** Payload bytes. */
  data: Uint8Array;
  /** Headers as published (including `Nats-Msg-Id` and trace headers). */
  headers: Headers;
  /** Stream sequence: unique per stream, increasing in publish order. */
  seq: number;
  /** 1 on the first delivery, 2 on the first redelivery, ... */
  deliveryCount: number;
  /** The msgId it was published with ("" if none). */
  msgId: string;
  /** When the message was stored. */
  time: Date;
  /** OpenTelemetry context extracted from the headers (the consumer span's context); handlers
   * start their spans under it. ROOT_CONTEXT when the message carried none. */
  context: Context;
  /** Extend the ack deadline by another ackWait (a heartbeat for long handlers). */
  working(): void;
}

/** Handles one delivery. Resolve → ack. Throw → redelivery after a backoff, and after `maxDeliver`
 * deliveries terminate-and-report. Throw {@link MalformedMessageError} → terminate-and-report now. */
export type DeliveryHandler = (msg: Delivery) => Promise<void> | void;

/** Why a message was terminated. `malformed`: the handler (or the typed layer's decoder) rejected it
 * as undecodable/invalid; `max-deliver`: it failed (or was abandoned) `maxDeliver` times. */
export type TerminationReason = "malformed" | "max-deliver";

/** The report of a terminated message, published to `idpo.reports.<source>.<consumer>`. */
export interface TerminationReport {
  /** `events` for an event-log subscription, `work` for the work queue. */
  source: "events" | "work";
  /** Durable consumer name the message was terminated by. */
  consumer: string;
  /** Logical subject of the terminated message. */
  subject: string;
  /** Its stream sequence. */
  seq: number;
  /** Its msgId ("" if none). */
  msgId: string;
  /** Deliveries made, including the one that terminated it. */
  deliveryCount: number;
  reason: TerminationReason;
  /** Message of the last error. */
  error: string;
  /** The terminated message's payload, so that it can be inspected or replayed. */
  data: Uint8Array;
  /** The terminated message's headers. */
  headers: Headers;
}

/** Termination hooks shared by event subscriptions and work consumers. */
export interface TerminationHooks {
  /** Awaited before the report is published and the message terminated. Must be idempotent: it runs
   * again if a termination attempt fails before the message is terminated (e.g. the process dies, or
   * this hook throws: then the message is redelivered and termination retried). Use it to emit a
   * domain event (e.g. ShardFailed) with a deterministic msgId. */
  beforeTerminate?: (report: TerminationReport) => Promise<void> | void;
  /** Notification after the report was stored for the first time (called once per terminated message
   * within the duplicate window, across all replicas). Errors are logged, not retried. */
  onTerminated?: (report: TerminationReport) => void;
}

/** Delivery policy shared by event subscriptions and work consumers. */
export interface DeliveryPolicy extends TerminationHooks {
  /** Deliveries before a failing message is terminated and reported (≥ 1). */
  maxDeliver?: number;
  /** A delivered message not acked (nor heartbeated with `working()`) within this time is redelivered. */
  ackWaitMs?: number;
  /** Delay before redelivery after a handler error, by failed attempt (the last value repeats). */
  backoffMs?: number[];
  /** Handlers running at once in this subscription (≥ 1). */
  concurrency?: number;
}

/** Where a new durable subscription starts; ignored when the durable already exists (it resumes). */
export type StartPosition =
  | "all"
  | "new"
  | "last"
  | { seq: number }
  | {
      /** First message stored at or after this time. */
      time: Date;
    };

/** Options of {@link EventLog.subscribe}. */
export interface SubscribeOptions extends DeliveryPolicy {
  /** Durable consumer name ([A-Za-z0-9_-]+). Subscriptions with the same name share (load-balance)
   * its messages and its position survives restarts. */
  consumer: string;
  /** Subject filter with NATS wildcards (`*` one token, `>` the rest), under `idpo.events.` or
   * `idpo.reports.`. Default `idpo.events.>`. */
  filter?: string;
  /** Start of a new durable. Default "all". */
  start?: StartPosition;
  /** Delete the durable once it has had no subscriber for this long, ms (NATS inactive_threshold): for a
   * consumer of one process (a replica's), which nothing resumes after the process is gone. Unset: kept
   * forever. The embedded bus, which one process owns, keeps it. */
  idleExpiryMs?: number;
}

/** Options of {@link Subscription.stop}. */
export interface StopOptions {
  /** How long to wait for running handlers; handlers still running then are abandoned (their
   * messages are not acked and get redelivered after ackWait). Default 30 000 ms. */
  timeoutMs?: number;
}

/** A running subscription or work consumer. */
export interface Subscription {
  /** Stop taking messages and wait (up to the timeout) for running handlers to finish. */
  stop(opts?: StopOptions): Promise<void>;
  /** Resolves when the subscription has stopped. */
  readonly closed: Promise<void>;
}

/** The run-event log: a stream of `idpo.events.<runId>.<kind>` messages with durable subscriptions. */
export interface EventLog {
  /** Store an event. `subject` must be `idpo.events.<token>.<token>[...]`. */
  publish(subject: string, data: Uint8Array, opts: PublishOptions): Promise<PublishAck>;
  /** Start (or resume) a durable subscription. Messages are acked after the handler resolves. */
  subscribe(opts: SubscribeOptions, handler: DeliveryHandler): Promise<Subscription>;
  /** Last stored sequence of the event stream (0 when empty). */
  lastSeq(): Promise<number>;
}

/** Options of {@link WorkQueue.consume}. Defaults come from the queue's definition. */
export interface ConsumeOptions extends DeliveryPolicy {}

/** A work queue: each item is delivered to one worker at a time, removed once acked. */
export interface WorkQueue {
  /** Add an item; an item with a msgId seen inside the duplicate window is not added twice. */
  enqueue(data: Uint8Array, opts: PublishOptions): Promise<PublishAck>;
  /** Start a worker. All workers (in all processes) share one durable consumer. */
  consume(handler: DeliveryHandler, opts?: ConsumeOptions): Promise<Subscription>;
  /** Items stored and not yet acked or terminated (waiting or in progress). */
  pending(): Promise<number>;
}

/** A stored state value with its revision. */
export interface StateEntry {
  key: string;
  value: Uint8Array;
  /** Increases with every write to the store (any key); the compare-and-set token. */
  revision: number;
}

/** A change seen by {@link StateStore.watch}. */
export interface StateChange {
  key: string;
  /** "put" for a create/update, "delete" for a delete. */
  op: "put" | "delete";
  /** The new value (empty for a delete). */
  value: Uint8Array;
  revision: number;
}

/** Options of {@link StateStore.watch}. */
export interface WatchOptions {
  /** Also yield the current value of every matching key first. Default true. */
  includeExisting?: boolean;
}

/** A stoppable async iterator of state changes. */
export interface StateWatch extends AsyncIterable<StateChange> {
  /** End the iteration (pending `next()` calls resolve with done). */
  stop(): void;
}

/** Key-value run state with compare-and-set. Keys: [A-Za-z0-9_=/.-]+, no leading/trailing `.`. */
export interface StateStore {
  get(key: string): Promise<StateEntry | undefined>;
  /** Create; throws {@link RevisionConflictError} if the key exists. Returns the revision. */
  create(key: string, value: Uint8Array): Promise<number>;
  /** Write only if the key's current revision is `expectedRevision`; else throws
   * {@link RevisionConflictError}. Returns the new revision. */
  update(key: string, value: Uint8Array, expectedRevision: number): Promise<number>;
  /** Unconditional write. Returns the new revision. */
  put(key: string, value: Uint8Array): Promise<number>;
  /** Delete (optionally only at `expectedRevision`). Deleting a missing key is a no-op. */
  delete(key: string, expectedRevision?: number): Promise<void>;
  /** Keys starting with `prefix` (all keys for ""), sorted. */
  keys(prefix?: string): Promise<string[]>;
  /** Changes of keys starting with `prefix`, in revision order. */
  watch(prefix?: string, opts?: WatchOptions): Promise<StateWatch>;
}

/** Metadata of a stored artifact. */
export interface ArtifactInfo {
  name: string;
  /** Size in bytes. */
  size: number;
  /** Lowercase hex SHA-256 of the content. */
  digest: string;
  /** User metadata given at put. */
  meta: Record<string, string>;
  /** When it was stored. */
  mtime: Date;
}

/** Options of {@link ArtifactStore.put}. */
export interface PutOptions {
  /** String metadata kept with the object (e.g. content type, lineage). */
  meta?: Record<string, string>;
}

/** Named binary objects of any size: checkpoints, pair shards, sample grids. */
export interface ArtifactStore {
  /** Store (or replace) an object from bytes or a stream of chunks. */
  put(name: string, data: Uint8Array | AsyncIterable<Uint8Array>, opts?: PutOptions): Promise<ArtifactInfo>;
  /** The whole object, or undefined if absent. Content is verified against the digest. */
  get(name: string): Promise<Uint8Array | undefined>;
  /** The object as a stream of chunks, or undefined if absent. The stream throws at its end if the
   * content does not match the digest. */
  getStream(name: string): Promise<AsyncIterable<Uint8Array> | undefined>;
  info(name: string): Promise<ArtifactInfo | undefined>;
  /** Objects whose name starts with `prefix`, sorted by name. */
  list(prefix?: string): Promise<ArtifactInfo[]>;
  /** Delete; true if it existed. */
  delete(name: string): Promise<boolean>;
}

/** The bus: events, work, state and artifacts over one backend. */
export interface Bus {
  /** "nats" or "embedded". */
  readonly kind: "nats" | "embedded";
  readonly events: EventLog;
  /** The pair-generation shard queue. */
  readonly work: WorkQueue;
  readonly state: StateStore;
  readonly artifacts: ArtifactStore;
  /** Stop all subscriptions (waiting up to `timeoutMs` for running handlers) and release the backend. */
  close(opts?: StopOptions): Promise<void>;
}
