import { create } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import type { ImageBatch } from "@idpo/diffusion";
import { imagesFromMessages, imagesToMessages } from "@idpo/mesh";
import {
  ImageFormat,
  type ImproveImagesRequest,
  ImproveImagesRequestSchema,
  type ImproveImagesResponse,
  type ImproverService,
  type PairShardTask,
} from "@idpo/proto";
import { type Logger, retryTransient } from "@idpo/runtime";

/** What the improver calls of a shard work with. */
export interface ImproverCallDeps {
  /** Client of the Improver (balanced across replicas when its transport is). */
  improver: Client<typeof ImproverService>;
  logger: Logger;
  config: {
    /** Most images per ImproveImages call (the improver batches concurrent calls). */
    improveChunk: number;
    /** Deadline of each ImproveImages call, ms. */
    improveTimeoutMs: number;
    /** How long calls to an Improver that is away are retried, ms. */
    peerRetryMs: number;
  };
}

/** ImproveImages attempts per chunk when the improver serves another checkpoint than the task's. */
const IMPROVER_SWITCH_ATTEMPTS = 4;

/** Winners for a shard's losers, and the improver checkpoint that made them ("" when the task names none). */
export interface ImprovedLosers {
  winners: ImageBatch;
  improverId: string;
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

/** Calls the Improver, riding out its outages (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED). */
function callImprover<T>(
  deps: ImproverCallDeps,
  what: string,
  t: PairShardTask,
  call: () => Promise<T>,
): Promise<T> {
  return retryTransient(call, {
    budgetMs: deps.config.peerRetryMs,
    baseDelayMs: 500,
    maxDelayMs: 5_000,
    onRetry: (err, attempt, delayMs) =>
      deps.logger.warn("improver unreachable; retrying without spending the shard's deliveries", {
        artifact: t.outputArtifact,
        call: what,
        attempt: attempt + 1,
        retryInMs: delayMs,
        error: err instanceof ConnectError ? `${Code[err.code]}: ${err.rawMessage}` : String(err),
      }),
  });
}

/** Asks the Improver to load the task's improver checkpoint. */
async function loadTaskImprover(deps: ImproverCallDeps, t: PairShardTask): Promise<void> {
  await callImprover(deps, "LoadCheckpoint", t, () =>
    deps.improver.loadCheckpoint(
      { checkpointId: t.improverCheckpointId },
      { timeoutMs: deps.config.improveTimeoutMs },
    ),
  );
}

/**
 * Winners for the losers from the Improver, one call per run of consecutive seeds, checking that it serves
 * the task's improver checkpoint (and the same one throughout the shard).
 */
export async function improveLosers(
  deps: ImproverCallDeps,
  t: PairShardTask,
  losers: ImageBatch,
  seeds: number[],
): Promise<ImprovedLosers> {
  const S = losers.height;
  const per = S * S * 3;
  const winners = new Float32Array(losers.data.length);
  const ids = new Set<string>();
  await Promise.all(
    seedRuns(seeds, deps.config.improveChunk).map(async ({ start, end }) => {
      const req = improveRequest(t, losers, seeds, start, end);
      const { batch, improverId } = await improveChunk(deps, t, req, end - start, S);
      winners.set(batch.data, start * per);
      ids.add(improverId);
    }),
  );
  if (ids.size > 1)
    throw new Error(`the improver changed checkpoints during the shard (${[...ids].join(", ")})`);
  return {
    winners: { n: losers.n, height: S, width: S, channels: 3, data: winners },
    improverId: [...ids][0] ?? "",
  };
}

/** The ImproveImages request of losers [start, end) of a shard. */
function improveRequest(
  t: PairShardTask,
  losers: ImageBatch,
  seeds: readonly number[],
  start: number,
  end: number,
): ImproveImagesRequest {
  const S = losers.height;
  const per = S * S * 3;
  const images = imagesToMessages(
    { n: end - start, height: S, width: S, channels: 3, data: losers.data.subarray(start * per, end * per) },
    ImageFormat.TENSOR,
  );
  return create(ImproveImagesRequestSchema, {
    images,
    prompts: t.prompts.slice(start, end),
    textGuidanceScale: t.textGuidanceScale,
    imageGuidanceScale: t.imageGuidanceScale,
    strength: t.improveStrength,
    steps: t.steps,
    seed: BigInt(seeds[start]),
    outputFormat: ImageFormat.TENSOR,
  });
}

/**
 * One ImproveImages call of `n` images of size S, from an improver serving the task's checkpoint: one
 * without weights or with another checkpoint is asked to load it, up to IMPROVER_SWITCH_ATTEMPTS times.
 */
async function improveChunk(
  deps: ImproverCallDeps,
  t: PairShardTask,
  req: ImproveImagesRequest,
  n: number,
  S: number,
): Promise<{ batch: ImageBatch; improverId: string }> {
  const want = t.improverCheckpointId;
  for (let attempt = 1; ; attempt++) {
    let res: ImproveImagesResponse;
    try {
      res = await callImprover(deps, "ImproveImages", t, () =>
        deps.improver.improveImages(req, { timeoutMs: deps.config.improveTimeoutMs }),
      );
    } catch (err) {
      // A replica without weights yet (it loads on checkpoint.published) can be told which to load.
      const unloaded = err instanceof ConnectError && err.code === Code.FailedPrecondition;
      if (!unloaded || want === "" || attempt >= IMPROVER_SWITCH_ATTEMPTS) throw err;
      deps.logger.info("improver has no weights: asking it to load the task's", { want });
      await loadTaskImprover(deps, t);
      continue;
    }
    const got = res.checkpoint?.id ?? "";
    if (want !== "" && got !== want) {
      if (attempt >= IMPROVER_SWITCH_ATTEMPTS) {
        throw new Error(
          `the improver serves checkpoint ${JSON.stringify(got)}, the shard needs ${JSON.stringify(want)}`,
        );
      }
      deps.logger.info("improver serves another checkpoint: asking it to load the task's", {
        serving: got,
        want,
      });
      await loadTaskImprover(deps, t);
      continue;
    }
    if (res.images.length !== n) {
      throw new Error(`the improver returned ${res.images.length} images for ${n}`);
    }
    return {
      batch: imagesFromMessages(res.images, { field: "improver response images", size: S }),
      improverId: got,
    };
  }
}
