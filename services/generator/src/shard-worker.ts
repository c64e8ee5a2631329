import { create } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import {
  type Bus,
  consumeShards,
  type Delivery,
  decodePairShardTask,
  MalformedMessageError,
  publishRunEvent,
  type Subscription,
  type TerminationReport,
} from "@idpo/bus";
import type { ImageBatch } from "@idpo/diffusion";
import {
  checkpointArtifact,
  encodePairShard,
  imagesFromMessages,
  imagesToMessages,
  type LoadedModel,
  type ModelSlot,
  type PairPixelDtype,
  type PairShardRecordInput,
  pairShardMeta,
  readPairShardMeta,
  type ServedModel,
} from "@idpo/mesh";
import {
  ImageFormat,
  ImproveImagesRequestSchema,
  type ImproveImagesResponse,
  type ImproverService,
  type PairShardTask,
} from "@idpo/proto";
import { type Logger, retryTransient, tracer } from "@idpo/runtime";
import { SpanStatusCode } from "@opentelemetry/api";

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

const MAX_PROMPTS = 65_536;
/** ImproveImages attempts per chunk when the improver serves another checkpoint than the task's. */
const IMPROVER_SWITCH_ATTEMPTS = 4;

/**
 * Decodes a PairShardTask with the bus's structural checks, then the generator's own limits (sizes,
 * checkpoint ids, sampling ranges); anything wrong is a MalformedMessageError naming the field.
 */
export function decodeShardTask(data: Uint8Array): PairShardTask {
  return checkShardTask(decodePairShardTask(data));
}

/** The generator's limits on a structurally valid task. */
function checkShardTask(t: PairShardTask): PairShardTask {
  const bad = (msg: string) =>
    new MalformedMessageError(`PairShardTask ${t.outputArtifact || "(no output_artifact)"}: ${msg}`);
  if (t.prompts.length > MAX_PROMPTS) throw bad(`prompts: ${t.prompts.length} is more than ${MAX_PROMPTS}`);
  for (let i = 0; i < t.seeds.length; i++) {
    if (t.seeds[i] > BigInt(Number.MAX_SAFE_INTEGER))
      throw bad(`seeds[${i}]: ${t.seeds[i]} exceeds ${Number.MAX_SAFE_INTEGER}`);
    if (t.prompts[i].length > 512)
      throw bad(`prompts[${i}]: ${t.prompts[i].length} characters is more than 512`);
  }
  for (const [field, id] of [
    ["policy_checkpoint_id", t.policyCheckpointId],
    ["improver_checkpoint_id", t.improverCheckpointId],
  ] as const) {
    if (id === "") continue;
    try {
      checkpointArtifact(id);
    } catch (e) {
      throw bad(`${field}: ${(e as Error).message}`);
    }
  }
  if (
    t.outputArtifact === "" ||
    t.outputArtifact.startsWith("/") ||
    t.outputArtifact.split("/").includes("..")
  ) {
    throw bad(`output_artifact ${JSON.stringify(t.outputArtifact)} must be a relative artifact name`);
  }
  if (t.steps > 1000) throw bad(`steps: ${t.steps} is more than 1000`);
  for (const [field, v] of [
    ["guidance_scale", t.guidanceScale],
    ["text_guidance_scale", t.textGuidanceScale],
    ["image_guidance_scale", t.imageGuidanceScale],
  ] as const) {
    if (v !== undefined && !(Number.isFinite(v) && v >= 0 && v <= 30))
      throw bad(`${field}: ${v} is outside [0, 30]`);
  }
  if (t.improveStrength !== undefined && !(t.improveStrength > 0 && t.improveStrength <= 1))
    throw bad(`improve_strength: ${t.improveStrength} is outside (0, 1]`);
  return t;
}

/** Event id of a shard's pairs_ready (the de-duplication key): `<run>/iter-<k>/pairs-ready/<i>`. */
export function pairsReadyEventId(t: Pick<PairShardTask, "runId" | "iteration" | "shardIndex">): string {
  return `${t.runId}/iter-${t.iteration}/pairs-ready/${t.shardIndex}`;
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

/** Runs of consecutive pairs whose seeds are consecutive (one ImproveImages call gives image i seed + i). */
function seedRuns(seeds: readonly number[], maxLen: number): { start: number; end: number }[] {
  const runs: { start: number; end: number }[] = [];
  let start = 0;
  for (let i = 1; i <= seeds.length; i++) {
    if (i === seeds.length || seeds[i] !== seeds[i - 1] + 1 || i - start >= maxLen) {
      runs.push({ start, end: i });
      start = i;
    }
  }
  return runs;
}

/**
 * Starts the pair-shard worker on the bus's work queue: each PairShardTask is turned into a stored
 * shard of (prompt, winner, loser) records and a pairs_ready event, then acked. A task whose output
 * artifact already exists only has its pairs_ready published again (idempotent redelivery). Malformed
 * tasks are terminated and reported at once; a task failing max_deliver times is terminated and a
 * shard_failed event published for it.
 */
export function startShardWorker(deps: ShardWorkerDeps): Promise<Subscription> {
  const { bus, config, logger } = deps;

  async function republish(t: PairShardTask, msg: Delivery): Promise<boolean> {
    const info = await bus.artifacts.info(t.outputArtifact);
    if (!info) return false;
    const meta = readPairShardMeta(info.meta);
    if (!meta) {
      throw new Error(
        `artifact ${t.outputArtifact} exists but is not a pair shard written by a generator (meta ${JSON.stringify(info.meta)})`,
      );
    }
    const { pairCount } = meta;
    await publishPairsReady(t, pairCount, meta.policyCheckpointId, meta.meanPairDistance);
    logger.info("pair shard already stored: pairs_ready published again", {
      artifact: t.outputArtifact,
      delivery: msg.deliveryCount,
    });
    deps.onShard?.({
      runId: t.runId,
      iteration: t.iteration,
      shardIndex: t.shardIndex,
      artifact: t.outputArtifact,
      pairCount,
      policyCheckpointId: meta.policyCheckpointId,
      improverCheckpointId: meta.improverCheckpointId,
      republished: true,
      deliveryCount: msg.deliveryCount,
    });
    return true;
  }

  function publishPairsReady(t: PairShardTask, pairCount: number, policyId: string, distance: number) {
    return publishRunEvent(bus.events, {
      eventId: pairsReadyEventId(t),
      runId: t.runId,
      payload: {
        case: "pairsReady",
        value: {
          iteration: t.iteration,
          shardIndex: t.shardIndex,
          artifact: t.outputArtifact,
          pairCount,
          policyCheckpointId: policyId,
          meanPairDistance: distance,
        },
      },
    });
  }

  /** Calls the Improver, riding out its outages (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED). */
  function callImprover<T>(what: string, t: PairShardTask, call: () => Promise<T>): Promise<T> {
    return retryTransient(call, {
      budgetMs: config.peerRetryMs,
      baseDelayMs: 500,
      maxDelayMs: 5_000,
      onRetry: (err, attempt, delayMs) =>
        logger.warn("improver unreachable; retrying without spending the shard's deliveries", {
          artifact: t.outputArtifact,
          call: what,
          attempt: attempt + 1,
          retryInMs: delayMs,
          error: err instanceof ConnectError ? `${Code[err.code]}: ${err.rawMessage}` : String(err),
        }),
    });
  }

  /** Winners for the losers from the Improver, checking it serves the task's improver checkpoint. */
  async function improveLosers(
    t: PairShardTask,
    losers: ImageBatch,
    seeds: number[],
  ): Promise<{ winners: ImageBatch; improverId: string }> {
    const S = losers.height;
    const per = S * S * 3;
    const winners = new Float32Array(losers.data.length);
    const want = t.improverCheckpointId;
    const ids = new Set<string>();
    await Promise.all(
      seedRuns(seeds, config.improveChunk).map(async ({ start, end }) => {
        const images = imagesToMessages(
          {
            n: end - start,
            height: S,
            width: S,
            channels: 3,
            data: losers.data.subarray(start * per, end * per),
          },
          ImageFormat.TENSOR,
        );
        const req = create(ImproveImagesRequestSchema, {
          images,
          prompts: t.prompts.slice(start, end),
          textGuidanceScale: t.textGuidanceScale,
          imageGuidanceScale: t.imageGuidanceScale,
          strength: t.improveStrength,
          steps: t.steps,
          seed: BigInt(seeds[start]),
          outputFormat: ImageFormat.TENSOR,
        });
        for (let attempt = 1; ; attempt++) {
          let res: ImproveImagesResponse;
          try {
            res = await callImprover("ImproveImages", t, () =>
              deps.improver.improveImages(req, { timeoutMs: config.improveTimeoutMs }),
            );
          } catch (err) {
            // A replica without weights yet (it loads on checkpoint.published) can be told which to load.
            const unloaded = err instanceof ConnectError && err.code === Code.FailedPrecondition;
            if (!unloaded || want === "" || attempt >= IMPROVER_SWITCH_ATTEMPTS) throw err;
            logger.info("improver has no weights: asking it to load the task's", { want });
            await callImprover("LoadCheckpoint", t, () =>
              deps.improver.loadCheckpoint({ checkpointId: want }, { timeoutMs: config.improveTimeoutMs }),
            );
            continue;
          }
          const got = res.checkpoint?.id ?? "";
          if (want !== "" && got !== want) {
            if (attempt >= IMPROVER_SWITCH_ATTEMPTS) {
              throw new Error(
                `the improver serves checkpoint ${JSON.stringify(got)}, the shard needs ${JSON.stringify(want)}`,
              );
            }
            logger.info("improver serves another checkpoint: asking it to load the task's", {
              serving: got,
              want,
            });
            await callImprover("LoadCheckpoint", t, () =>
              deps.improver.loadCheckpoint({ checkpointId: want }, { timeoutMs: config.improveTimeoutMs }),
            );
            continue;
          }
          if (res.images.length !== end - start) {
            throw new Error(`the improver returned ${res.images.length} images for ${end - start}`);
          }
          const batch = imagesFromMessages(res.images, { field: "improver response images", size: S });
          winners.set(batch.data, start * per);
          ids.add(got);
          return;
        }
      }),
    );
    if (ids.size > 1)
      throw new Error(`the improver changed checkpoints during the shard (${[...ids].join(", ")})`);
    return {
      winners: { n: losers.n, height: S, width: S, channels: 3, data: winners },
      improverId: [...ids][0] ?? "",
    };
  }

  async function work(t: PairShardTask, msg: Delivery): Promise<void> {
    if (await republish(t, msg)) return;
    const lease = await deps.slot.loadAndAcquire(t.policyCheckpointId, deps.loadPolicy);
    try {
      const seeds = t.seeds.map(Number);
      const steps = t.steps === 0 ? 20 : t.steps;
      const losers = await lease.model.sample({
        prompts: t.prompts,
        seeds,
        steps,
        guidanceScale: t.guidanceScale ?? 3.0,
        batchSize: config.batchSize,
      });
      const { winners, improverId } = await improveLosers(t, losers, seeds);
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
      const distance = meanPairDistance(winners, losers);
      const policyId = lease.ref.id;
      const bytes = encodePairShard({
        height: S,
        width: S,
        dtype: config.pairDtype,
        info: {
          runId: t.runId,
          iteration: t.iteration,
          shardIndex: t.shardIndex,
          shardCount: t.shardCount,
          policyCheckpointId: policyId,
          improverCheckpointId: improverId,
          steps,
          guidanceScale: t.guidanceScale ?? 3.0,
          textGuidanceScale: t.textGuidanceScale ?? 3.5,
          imageGuidanceScale: t.imageGuidanceScale ?? 3.0,
        },
        records,
      });
      await bus.artifacts.put(t.outputArtifact, bytes, {
        meta: pairShardMeta({
          runId: t.runId,
          iteration: t.iteration,
          shardIndex: t.shardIndex,
          pairCount: records.length,
          policyCheckpointId: policyId,
          improverCheckpointId: improverId,
          meanPairDistance: distance,
        }),
      });
      await publishPairsReady(t, records.length, policyId, distance);
      logger.info("pair shard stored", {
        artifact: t.outputArtifact,
        pairs: records.length,
        policy: policyId,
        improver: improverId,
        meanPairDistance: distance,
      });
      deps.onShard?.({
        runId: t.runId,
        iteration: t.iteration,
        shardIndex: t.shardIndex,
        artifact: t.outputArtifact,
        pairCount: records.length,
        policyCheckpointId: policyId,
        improverCheckpointId: improverId,
        republished: false,
        deliveryCount: msg.deliveryCount,
      });
    } finally {
      lease.release();
    }
  }

  return consumeShards(
    bus,
    async (task, msg) => {
      const t = checkShardTask(task);
      const heartbeat = setInterval(() => msg.working(), config.heartbeatMs);
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
              await work(t, msg);
            } catch (err) {
              span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
              throw err;
            } finally {
              span.end();
            }
          },
        );
      } catch (err) {
        logger.warn("pair shard failed; it will be redelivered", {
          artifact: t.outputArtifact,
          delivery: msg.deliveryCount,
          error:
            err instanceof ConnectError ? `${Code[err.code]}: ${err.rawMessage}` : (err as Error).message,
        });
        throw err;
      } finally {
        clearInterval(heartbeat);
      }
    },
    {
      concurrency: config.workers,
      onTerminated: (report) => {
        logger.error("pair shard terminated", {
          reason: report.reason,
          msgId: report.msgId,
          deliveries: report.deliveryCount,
          error: report.error,
        });
        deps.onTerminated?.(report);
      },
    },
  );
}
