import { Code, ConnectError } from "@connectrpc/connect";
import {
  type CheckpointRef,
  type GeneratedImage,
  type GenerationSpec,
  type Job,
  type JobSpec,
  JobState,
} from "@idpo/proto";
import { backoffMs, isTransient, retryTransient, sleep } from "@idpo/runtime";
import type { DriverDeps } from "./driver-deps.js";
import { errorMessage, StageError } from "./run-errors.js";

/** What a call to a peer works with: the run it is for (logs), the peers and timings, and the step's signal. */
export interface PeerCallContext {
  readonly runId: string;
  readonly deps: Pick<DriverDeps, "peers" | "options" | "logger">;
  readonly signal: AbortSignal;
}

/** Calls `fn`, retrying transient failures (a peer down or restarting) for up to `peerRetryMs`. */
export function retryPeer<T>(ctx: PeerCallContext, what: string, fn: () => Promise<T>): Promise<T> {
  return retryTransient(fn, {
    budgetMs: ctx.deps.options.peerRetryMs,
    signal: ctx.signal,
    onRetry: (err, attempt) =>
      ctx.deps.logger.warn("peer call failed; retrying", {
        runId: ctx.runId,
        call: what,
        attempt,
        error: errorMessage(err),
      }),
  });
}

function jobEnded(state: JobState): boolean {
  return state === JobState.SUCCEEDED || state === JobState.FAILED || state === JobState.CANCELLED;
}

/**
 * Submits a trainer job (idempotent on its id) and follows it to its end. `onUpdate` sees the job as it
 * goes (`final` once, with its last state). Returns the job when it succeeded with a final checkpoint;
 * a job that failed, was cancelled or has no checkpoint is a StageError naming `label`.
 */
export async function runTrainerJob(
  ctx: PeerCallContext,
  spec: JobSpec,
  label: string,
  onUpdate: (job: Job, final: boolean) => Promise<void>,
): Promise<Job> {
  const job = await followTrainerJob(ctx, spec, label, (j) => onUpdate(j, false));
  await onUpdate(job, true);
  return succeededJob(job, label);
}

/** Follows a job through WatchJob until it ends, polling GetJob while the stream is down, resubmitting a lost job. */
async function followTrainerJob(
  ctx: PeerCallContext,
  spec: JobSpec,
  label: string,
  onUpdate: (job: Job) => Promise<void>,
): Promise<Job> {
  const { trainer } = ctx.deps.peers;
  const { options } = ctx.deps;
  const signal = ctx.signal;
  const jobId = spec.jobId;
  const start = async () =>
    (await retryPeer(ctx, "StartJob", () => trainer.startJob({ spec }, { signal }))).job!;
  let job = await start();
  let attempt = 0;
  let lastContact = Date.now();
  while (!jobEnded(job.state)) {
    try {
      for await (const res of trainer.watchJob({ jobId }, { signal })) {
        lastContact = Date.now();
        attempt = 0;
        job = res.job!;
        await onUpdate(job);
        if (jobEnded(job.state)) break;
      }
      if (jobEnded(job.state)) break;
      // The stream ended early (the trainer is shutting down): poll until it is back.
      await sleep(backoffMs(attempt++, options.jobPollMs, 30_000), signal);
      job = (await retryPeer(ctx, "GetJob", () => trainer.getJob({ jobId }, { signal }))).job!;
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      if (err instanceof ConnectError && err.code === Code.NotFound) {
        // The trainer lost the job (e.g. a fresh state store): submit it again.
        job = await start();
        continue;
      }
      if (!isTransient(err)) throw err;
      if (Date.now() - lastContact > options.peerRetryMs) {
        throw new StageError(
          `${label}: trainer unreachable while waiting for job ${jobId}: ${errorMessage(err)}`,
        );
      }
      await sleep(backoffMs(attempt++, options.jobPollMs, 30_000), signal);
    }
  }
  return job;
}

/** The ended job when it succeeded with a final checkpoint; a StageError otherwise. */
function succeededJob(job: Job, label: string): Job {
  const { jobId } = job;
  if (job.state === JobState.SUCCEEDED) {
    if (!job.finalCheckpoint)
      throw new StageError(`${label}: trainer job ${jobId} succeeded without a final checkpoint`);
    return job;
  }
  if (job.state === JobState.FAILED) {
    throw new StageError(`${label}: trainer job ${jobId} failed: ${job.error || "no reason given"}`);
  }
  throw new StageError(`${label}: trainer job ${jobId} was cancelled`);
}

/** Images sampled from one checkpoint, and the checkpoint the generator says it sampled. */
export interface Samples {
  images: GeneratedImage[];
  checkpoint?: CheckpointRef;
}

/**
 * Samples `expected` images through the Generator with `spec.checkpoint_id` required. A generator that holds
 * another checkpoint answers FAILED_PRECONDITION; it loads new checkpoints on checkpoint.published by itself,
 * and after `loadWaitMs` the controller asks it to with LoadCheckpoint. `onChunk` sees the count sampled.
 */
export async function sampleCheckpoint(
  ctx: PeerCallContext,
  spec: GenerationSpec,
  expected: number,
  onChunk: (done: number, total: number) => Promise<void>,
): Promise<Samples> {
  const { generator } = ctx.deps.peers;
  const { options } = ctx.deps;
  const signal = ctx.signal;
  const started = Date.now();
  // When the current streak of transient failures (generator down or restarting) began; 0 when none.
  let unreachableSince = 0;
  for (let attempt = 0; ; attempt++) {
    try {
      return await streamSamples(ctx, spec, expected, onChunk);
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      if (err instanceof ConnectError && err.code === Code.FailedPrecondition) {
        unreachableSince = 0;
        const waited = Date.now() - started;
        if (waited > options.peerRetryMs) {
          throw new StageError(
            `evaluation: no generator serves checkpoint ${spec.checkpointId}: ${err.message}`,
          );
        }
        if (waited >= options.loadWaitMs) {
          await retryPeer(ctx, "LoadCheckpoint", () =>
            generator.loadCheckpoint({ checkpointId: spec.checkpointId }, { signal }),
          );
        }
      } else if (isTransient(err)) {
        unreachableSince ||= Date.now();
        if (Date.now() - unreachableSince > options.peerRetryMs) throw err;
      } else {
        throw err;
      }
      await sleep(backoffMs(attempt, 250, 5_000), signal);
    }
  }
}

/** One GenerateImagesStream call; the count of images must be `expected`. */
async function streamSamples(
  ctx: PeerCallContext,
  spec: GenerationSpec,
  expected: number,
  onChunk: (done: number, total: number) => Promise<void>,
): Promise<Samples> {
  const images: GeneratedImage[] = [];
  let checkpoint: CheckpointRef | undefined;
  const stream = ctx.deps.peers.generator.generateImagesStream(
    { spec, chunkSize: 0 },
    { signal: ctx.signal },
  );
  for await (const chunk of stream) {
    images.push(...chunk.images);
    checkpoint = chunk.checkpoint ?? checkpoint;
    await onChunk(chunk.done, chunk.total);
  }
  if (images.length !== expected) {
    throw new StageError(`evaluation: the generator returned ${images.length} images, expected ${expected}`);
  }
  return { images, checkpoint };
}
