import { type Client, Code, ConnectError } from "@connectrpc/connect";
import {
  type Bus,
  consumeShards,
  type Delivery,
  publishRunEvent,
  type Subscription,
  type TerminationReport,
} from "@idpo/bus";
import type { ImageBatch } from "@idpo/diffusion";
import {
  encodePairShard,
  type LoadedModel,
  type ModelSlot,
  type PairPixelDtype,
  type PairShardRecordInput,
  pairShardMeta,
  readPairShardMeta,
  type ServedModel,
} from "@idpo/mesh";
import type { ImproverService, PairShardTask } from "@idpo/proto";
import { type Logger, tracer } from "@idpo/runtime";
import { SpanStatusCode } from "@opentelemetry/api";
import { improveLosers } from "./improver-calls.js";
import { checkShardTask, pairsReadyEventId } from "./shard-task.js";

/** Settings of the pair-shard worker. */
export interface ShardWorkerConfig {
  /** Shards worked at once by this process (IDPO_GENERATOR_WORKERS). */
  workers: number;
  /** Images per policy forward pass. */
  batchSize: number;
  /** Pixel encoding of stored shards. */
  pairDtype: PairPixelDtype;
  /** Interval of `working()` heartbeats while a shard is in progress, ms. */
  heartbeatMs: number;
  /** Most images per ImproveImages call (the improver batches concurrent calls). */
  improveChunk: number;
  /** Deadline of each ImproveImages call, ms. */
  improveTimeoutMs: number;
  /** How long calls to an Improver that is down, overloaded or past its deadline are retried, ms: a peer
   * that is away is not a bad shard, so these waits spend none of the shard's deliveries. */
  peerRetryMs: number;
}

/** What happened to one shard delivery; given to `onShard` (tests and metrics). */
export interface ShardOutcome {
  runId: string;
  iteration: number;
  shardIndex: number;
  /** Artifact the pairs are stored under. */
  artifact: string;
  pairCount: number;
  /** Policy checkpoint that sampled the losers. */
  policyCheckpointId: string;
  /** Improver checkpoint that made the winners ("" when republished from an older artifact without it). */
  improverCheckpointId: string;
  /** True when the artifact already existed and only pairs_ready was published again. */
  republished: boolean;
  /** Delivery attempt (1 = first). */
  deliveryCount: number;
}

/** What the worker is built from. */
export interface ShardWorkerDeps {
  config: ShardWorkerConfig;
  bus: Pick<Bus, "work" | "events" | "artifacts">;
  /** The generator's policy slot (a task's checkpoint becomes the current policy). */
  slot: ModelSlot<ServedModel>;
  /** Loads a policy checkpoint by id. */
  loadPolicy: (id: string) => Promise<LoadedModel<ServedModel>>;
  /** Client of the Improver (balanced across replicas when its transport is). */
  improver: Client<typeof ImproverService>;
  logger: Logger;
  /** Called after every shard delivery that was acked. */
  onShard?: (outcome: ShardOutcome) => void;
  /** Called when a shard was terminated (malformed, or failed max_deliver times). */
  onTerminated?: (report: TerminationReport) => void;
}

/** A shard's pairs as stored: how many, the checkpoints that made them, and how far winners are from losers. */
interface StoredPairs {
  pairCount: number;
  policyCheckpointId: string;
  improverCheckpointId: string;
  meanPairDistance: number;
}

/**
 * Starts the pair-shard worker on the bus's work queue: each PairShardTask is turned into a stored
 * shard of (prompt, winner, loser) records and a pairs_ready event, then acked. A task whose output
 * artifact already exists only has its pairs_ready published again (idempotent redelivery). Malformed
 * tasks are terminated and reported at once; a task failing max_deliver times is terminated and a
 * shard_failed event published for it.
 */
export function startShardWorker(deps: ShardWorkerDeps): Promise<Subscription> {
  const { logger } = deps;
  return consumeShards(deps.bus, (task, msg) => handleDelivery(deps, checkShardTask(task), msg), {
    concurrency: deps.config.workers,
    onTerminated: (report) => {
      logger.error("pair shard terminated", {
        reason: report.reason,
        msgId: report.msgId,
        deliveries: report.deliveryCount,
        error: report.error,
      });
      deps.onTerminated?.(report);
    },
  });
}

/** One delivery of a shard: worked inside its span (`generator.pair_shard`) with heartbeats while it runs. */
async function handleDelivery(deps: ShardWorkerDeps, t: PairShardTask, msg: Delivery): Promise<void> {
  const heartbeat = setInterval(() => msg.working(), deps.config.heartbeatMs);
  try {
    await tracer().startActiveSpan(
      "generator.pair_shard",
      {
        attributes: {
          "idpo.run_id": t.runId,
          "idpo.iteration": t.iteration,
          "idpo.shard_index": t.shardIndex,
        },
      },
      msg.context,
      async (span) => {
        try {
          await workShard(deps, t, msg);
        } catch (err) {
          span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
          throw err;
        } finally {
          span.end();
        }
      },
    );
  } catch (err) {
    deps.logger.warn("pair shard failed; it will be redelivered", {
      artifact: t.outputArtifact,
      delivery: msg.deliveryCount,
      error: err instanceof ConnectError ? `${Code[err.code]}: ${err.rawMessage}` : (err as Error).message,
    });
    throw err;
  } finally {
    clearInterval(heartbeat);
  }
}

/** A shard whose artifact is stored already has its pairs_ready published again; any other is made. */
async function workShard(deps: ShardWorkerDeps, t: PairShardTask, msg: Delivery): Promise<void> {
  const stored = await storedShard(deps, t);
  if (stored) {
    await publishPairsReady(deps, t, stored);
    deps.logger.info("pair shard already stored: pairs_ready published again", {
      artifact: t.outputArtifact,
      delivery: msg.deliveryCount,
    });
    reportShard(deps, t, msg, stored, true);
    return;
  }
  const lease = await deps.slot.loadAndAcquire(t.policyCheckpointId, deps.loadPolicy);
  try {
    const pairs = await makeShard(deps, t, lease);
    await publishPairsReady(deps, t, pairs);
    deps.logger.info("pair shard stored", {
      artifact: t.outputArtifact,
      pairs: pairs.pairCount,
      policy: pairs.policyCheckpointId,
      improver: pairs.improverCheckpointId,
      meanPairDistance: pairs.meanPairDistance,
    });
    reportShard(deps, t, msg, pairs, false);
  } finally {
    lease.release();
  }
}

function reportShard(
  deps: ShardWorkerDeps,
  t: PairShardTask,
  msg: Delivery,
  pairs: StoredPairs,
  republished: boolean,
): void {
  deps.onShard?.({
    runId: t.runId,
    iteration: t.iteration,
    shardIndex: t.shardIndex,
    artifact: t.outputArtifact,
    pairCount: pairs.pairCount,
    policyCheckpointId: pairs.policyCheckpointId,
    improverCheckpointId: pairs.improverCheckpointId,
    republished,
    deliveryCount: msg.deliveryCount,
  });
}

/** The pairs of the task's artifact when it is stored already (an artifact that is no pair shard is an error). */
async function storedShard(deps: ShardWorkerDeps, t: PairShardTask): Promise<StoredPairs | undefined> {
  const info = await deps.bus.artifacts.info(t.outputArtifact);
  if (!info) return undefined;
  const meta = readPairShardMeta(info.meta);
  if (!meta) {
    throw new Error(
      `artifact ${t.outputArtifact} exists but is not a pair shard written by a generator (meta ${JSON.stringify(info.meta)})`,
    );
  }
  return {
    pairCount: meta.pairCount,
    policyCheckpointId: meta.policyCheckpointId,
    improverCheckpointId: meta.improverCheckpointId,
    meanPairDistance: meta.meanPairDistance,
  };
}

function publishPairsReady(deps: ShardWorkerDeps, t: PairShardTask, pairs: StoredPairs) {
  return publishRunEvent(deps.bus.events, {
    eventId: pairsReadyEventId(t),
    runId: t.runId,
    payload: {
      case: "pairsReady",
      value: {
        iteration: t.iteration,
        shardIndex: t.shardIndex,
        artifact: t.outputArtifact,
        pairCount: pairs.pairCount,
        policyCheckpointId: pairs.policyCheckpointId,
        meanPairDistance: pairs.meanPairDistance,
      },
    },
  });
}

/** Makes and stores the task's shard: losers sampled with the leased policy, winners from the Improver. */
async function makeShard(
  deps: ShardWorkerDeps,
  t: PairShardTask,
  lease: LoadedModel<ServedModel>,
): Promise<StoredPairs> {
  const seeds = t.seeds.map(Number);
  const steps = t.steps === 0 ? 20 : t.steps;
  const losers = await lease.model.sample({
    prompts: t.prompts,
    seeds,
    steps,
    guidanceScale: t.guidanceScale ?? 3.0,
    batchSize: deps.config.batchSize,
  });
  const { winners, improverId } = await improveLosers(deps, t, losers, seeds);
  const records = pairRecords(t, winners, losers, seeds);
  const pairs: StoredPairs = {
    pairCount: records.length,
    policyCheckpointId: lease.ref.id,
    improverCheckpointId: improverId,
    meanPairDistance: meanPairDistance(winners, losers),
  };
  await storeShard(deps, t, { size: losers.height, steps, records }, pairs);
  return pairs;
}

/** The (prompt, winner, loser) records of a shard, in the task's order. */
function pairRecords(
  t: PairShardTask,
  winners: ImageBatch,
  losers: ImageBatch,
  seeds: readonly number[],
): PairShardRecordInput[] {
  const S = losers.height;
  const per = S * S * 3;
  const records: PairShardRecordInput[] = [];
  for (let i = 0; i < losers.n; i++) {
    records.push({
      prompt: t.prompts[i],
      winner: { height: S, width: S, data: winners.data.subarray(i * per, (i + 1) * per) },
      loser: { height: S, width: S, data: losers.data.subarray(i * per, (i + 1) * per) },
      meta: { seed: seeds[i] },
    });
  }
  return records;
}

/** Encodes the shard and stores it under the task's artifact, with the metadata a republish reads back. */
async function storeShard(
  deps: ShardWorkerDeps,
  t: PairShardTask,
  shard: { size: number; steps: number; records: PairShardRecordInput[] },
  pairs: StoredPairs,
): Promise<void> {
  const { size: S, steps, records } = shard;
  const bytes = encodePairShard({
    height: S,
    width: S,
    dtype: deps.config.pairDtype,
    info: {
      runId: t.runId,
      iteration: t.iteration,
      shardIndex: t.shardIndex,
      shardCount: t.shardCount,
      policyCheckpointId: pairs.policyCheckpointId,
      improverCheckpointId: pairs.improverCheckpointId,
      steps,
      guidanceScale: t.guidanceScale ?? 3.0,
      textGuidanceScale: t.textGuidanceScale ?? 3.5,
      imageGuidanceScale: t.imageGuidanceScale ?? 3.0,
    },
    records,
  });
  await deps.bus.artifacts.put(t.outputArtifact, bytes, {
    meta: pairShardMeta({
      runId: t.runId,
      iteration: t.iteration,
      shardIndex: t.shardIndex,
      pairCount: records.length,
      policyCheckpointId: pairs.policyCheckpointId,
      improverCheckpointId: pairs.improverCheckpointId,
      meanPairDistance: pairs.meanPairDistance,
    }),
  });
}

/** Mean over pairs and pixels of the RGB Euclidean distance between winner and loser. */
function meanPairDistance(winners: ImageBatch, losers: ImageBatch): number {
  const w = winners.data;
  const l = losers.data;
  let sum = 0;
  const pixels = w.length / 3;
  for (let p = 0; p < pixels; p++) {
    const dr = w[3 * p] - l[3 * p];
    const dg = w[3 * p + 1] - l[3 * p + 1];
    const db = w[3 * p + 2] - l[3 * p + 2];
    sum += Math.sqrt(dr * dr + dg * dg + db * db);
  }
  return pixels > 0 ? sum / pixels : 0;
}
