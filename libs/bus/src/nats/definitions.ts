/**
 * Every stream, consumer, KV bucket and object-store definition of the bus, in one place. The NATS
 * backend creates them idempotently at connect; the embedded backend takes its names and limits from here
 * too, so that both keep the same semantics.
 *
 * Names (without a prefix; a namePrefix `p` gives `p_IDPO_EVENTS`, subjects `p.idpo.events.>`, ...):
 * | what              | NATS name          | subjects / keys                        | retention |
 * |-------------------|--------------------|----------------------------------------|-----------|
 * | run events        | IDPO_EVENTS        | idpo.events.<runId>.<kind>             | limits    |
 * | terminations      | IDPO_REPORTS       | idpo.reports.<events|work>.<consumer>  | limits    |
 * | pair shards       | IDPO_WORK          | idpo.work.shards                       | workqueue |
 * | shard workers     | consumer `shard-workers` on IDPO_WORK (durable, pull, explicit ack) |  |
 * | run state         | KV bucket idpo_state (stream KV_idpo_state)                  | history 1 |
 * | artifacts         | object store idpo_artifacts (stream OBJ_idpo_artifacts)      |           |
 */
import {
  AckPolicy,
  type ConsumerConfig,
  DeliverPolicy,
  DiscardPolicy,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from "@nats-io/jetstream";
import type { KvOptions } from "@nats-io/kv";
import type { ObjectStoreOptions } from "@nats-io/obj";
import { nanos } from "@nats-io/transport-node";
import { checkName, EVENTS_ROOT, REPORTS_ROOT, type SubjectMapper, WORK_ROOT } from "../subjects.js";
import type { StartPosition } from "../types.js";

/** Tunable limits of the bus. Every field has a production default; tests shorten the timings. */
export interface BusLimits {
  /** Window in which a repeated msgId is recognised as a duplicate (NATS `duplicate_window`). */
  duplicateWindowMs: number;
  /** Age after which run events are dropped; 0 keeps them forever. */
  eventsMaxAgeMs: number;
  /** Age after which termination reports are dropped; 0 keeps them forever. */
  reportsMaxAgeMs: number;
  /** Default ack wait of event subscriptions. */
  eventsAckWaitMs: number;
  /** Default deliveries before a failing event is terminated and reported. */
  eventsMaxDeliver: number;
  /** Ack wait of the shard work queue: a shard not acked (nor heartbeated) within it is redelivered. */
  workAckWaitMs: number;
  /** Deliveries before a failing shard is terminated and reported. */
  workMaxDeliver: number;
  /** Default redelivery delays after a handler error, by failed attempt (the last repeats). */
  backoffMs: number[];
  /** Most outstanding unacked messages per event consumer (NATS `max_ack_pending`). */
  maxAckPending: number;
  /** Largest state value in bytes. */
  stateMaxValueBytes: number;
  /** Largest total artifact store size in bytes; -1 for no limit. */
  artifactsMaxBytes: number;
  /** Stream replicas (1 for a single server; 3 for a clustered production deployment). */
  replicas: number;
  /** Storage of all streams: "file" survives server restarts; "memory" does not. */
  storage: "file" | "memory";
  /** How long an idle pull request waits on the server before it is renewed (≥ 1000). Stopping a
   * subscription waits for the outstanding pull, so shorter values stop faster. */
  pullExpiresMs: number;
}

/** Production defaults. */
export const DEFAULT_LIMITS: BusLimits = {
  duplicateWindowMs: 2 * 60_000,
  eventsMaxAgeMs: 0,
  reportsMaxAgeMs: 0,
  eventsAckWaitMs: 30_000,
  eventsMaxDeliver: 5,
  workAckWaitMs: 60_000,
  workMaxDeliver: 3,
  backoffMs: [1_000, 5_000, 15_000, 30_000],
  maxAckPending: 1_000,
  stateMaxValueBytes: 1024 * 1024,
  artifactsMaxBytes: -1,
  replicas: 1,
  storage: "file",
  pullExpiresMs: 5_000,
};

/** One stream's definition in backend-neutral terms. */
export interface StreamDefinition {
  /** Stream name (with the prefix). */
  name: string;
  /** Logical subject root; the stream holds `<root>.>`. */
  root: string;
  retention: "limits" | "workqueue";
  /** 0 = forever. */
  maxAgeMs: number;
  duplicateWindowMs: number;
}

/** The work queue's definition. */
export interface QueueDefinition {
  stream: StreamDefinition;
  /** Logical subject items are stored under. */
  subject: string;
  /** Durable pull consumer shared by all workers. */
  consumer: string;
  ackWaitMs: number;
  maxDeliver: number;
}

/** All definitions of one bus namespace. */
export interface BusDefinitions {
  /** Name prefix ("" for none). */
  prefix: string;
  limits: BusLimits;
  events: StreamDefinition;
  reports: StreamDefinition;
  work: QueueDefinition;
  /** KV bucket name of run state. */
  stateBucket: string;
  /** Object store name of artifacts. */
  artifactsBucket: string;
}

function checkLimits(l: BusLimits): void {
  const positive: (keyof BusLimits)[] = [
    "duplicateWindowMs",
    "eventsAckWaitMs",
    "eventsMaxDeliver",
    "workAckWaitMs",
    "workMaxDeliver",
    "maxAckPending",
    "stateMaxValueBytes",
    "replicas",
  ];
  for (const k of positive) {
    const v = l[k];
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) {
      throw new Error(`bus limits: ${k} must be a positive number, got ${String(v)}`);
    }
  }
  for (const k of ["eventsMaxAgeMs", "reportsMaxAgeMs"] as const) {
    if (!Number.isFinite(l[k]) || l[k] < 0) throw new Error(`bus limits: ${k} must be ≥ 0, got ${l[k]}`);
  }
  if (l.pullExpiresMs < 1000)
    throw new Error(`bus limits: pullExpiresMs must be ≥ 1000, got ${l.pullExpiresMs}`);
  if (l.storage !== "file" && l.storage !== "memory") {
    throw new Error(`bus limits: storage must be "file" or "memory", got "${l.storage}"`);
  }
  if (!(l.artifactsMaxBytes === -1 || l.artifactsMaxBytes > 0)) {
    throw new Error(`bus limits: artifactsMaxBytes must be -1 or positive, got ${l.artifactsMaxBytes}`);
  }
}

/** The definitions for a name prefix and limit overrides. */
export function busDefinitions(prefix = "", overrides: Partial<BusLimits> = {}): BusDefinitions {
  if (prefix !== "") checkName(prefix, "bus name prefix");
  const limits: BusLimits = { ...DEFAULT_LIMITS, ...overrides };
  checkLimits(limits);
  const up = prefix ? `${prefix}_` : "";
  const work: StreamDefinition = {
    name: `${up}IDPO_WORK`,
    root: WORK_ROOT,
    retention: "workqueue",
    maxAgeMs: 0,
    duplicateWindowMs: limits.duplicateWindowMs,
  };
  return {
    prefix,
    limits,
    events: {
      name: `${up}IDPO_EVENTS`,
      root: EVENTS_ROOT,
      retention: "limits",
      maxAgeMs: limits.eventsMaxAgeMs,
      duplicateWindowMs: limits.duplicateWindowMs,
    },
    reports: {
      name: `${up}IDPO_REPORTS`,
      root: REPORTS_ROOT,
      retention: "limits",
      maxAgeMs: limits.reportsMaxAgeMs,
      duplicateWindowMs: limits.duplicateWindowMs,
    },
    work: {
      stream: work,
      subject: `${WORK_ROOT}.shards`,
      consumer: "shard-workers",
      ackWaitMs: limits.workAckWaitMs,
      maxDeliver: limits.workMaxDeliver,
    },
    stateBucket: `${up}idpo_state`,
    artifactsBucket: `${up}idpo_artifacts`,
  };
}

/** JetStream config of a stream definition. */
export function natsStreamConfig(
  def: StreamDefinition,
  limits: BusLimits,
  subjects: SubjectMapper,
): Partial<StreamConfig> {
  return {
    name: def.name,
    subjects: [subjects.toPhysical(`${def.root}.>`)],
    retention: def.retention === "workqueue" ? RetentionPolicy.Workqueue : RetentionPolicy.Limits,
    storage: limits.storage === "file" ? StorageType.File : StorageType.Memory,
    num_replicas: limits.replicas,
    max_age: nanos(def.maxAgeMs),
    duplicate_window: nanos(def.duplicateWindowMs),
    discard: DiscardPolicy.Old,
    max_msgs: -1,
    max_bytes: -1,
  };
}

/**
 * JetStream config of a durable pull consumer. `max_deliver` is -1 on the server on purpose: the bus
 * client enforces maxDeliver itself (deliveryCount check, then report, then term), so that a message whose
 * last delivery died with its worker is still delivered once more and reported, instead of being silently
 * parked by the server.
 */
export function natsConsumerConfig(opts: {
  durable: string;
  filter: string;
  ackWaitMs: number;
  maxAckPending: number;
  start: StartPosition;
  /** Delete the durable after this long without a subscriber, ms (unset: never). */
  idleExpiryMs?: number;
}): Partial<ConsumerConfig> {
  const cfg: Partial<ConsumerConfig> = {
    durable_name: opts.durable,
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(opts.ackWaitMs),
    max_deliver: -1,
    max_ack_pending: opts.maxAckPending,
    filter_subject: opts.filter,
  };
  if (opts.idleExpiryMs !== undefined) cfg.inactive_threshold = nanos(opts.idleExpiryMs);
  const s = opts.start;
  if (s === "all") cfg.deliver_policy = DeliverPolicy.All;
  else if (s === "new") cfg.deliver_policy = DeliverPolicy.New;
  else if (s === "last") cfg.deliver_policy = DeliverPolicy.Last;
  else if ("seq" in s) {
    cfg.deliver_policy = DeliverPolicy.StartSequence;
    cfg.opt_start_seq = s.seq;
  } else {
    cfg.deliver_policy = DeliverPolicy.StartTime;
    cfg.opt_start_time = s.time.toISOString();
  }
  return cfg;
}

/** KV options of the state bucket. One revision of history per key is enough for compare-and-set. */
export function natsStateOptions(limits: BusLimits): Partial<KvOptions> {
  return {
    history: 1,
    maxValueSize: limits.stateMaxValueBytes,
    storage: limits.storage === "file" ? StorageType.File : StorageType.Memory,
    replicas: limits.replicas,
  };
}

/** Object-store options of the artifacts bucket. */
export function natsArtifactOptions(limits: BusLimits): Partial<ObjectStoreOptions> {
  return {
    storage: limits.storage === "file" ? StorageType.File : StorageType.Memory,
    replicas: limits.replicas,
    max_bytes: limits.artifactsMaxBytes,
    description: "idpo artifacts: checkpoints, pair shards, sample grids",
  };
}
