import { createHash } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { DataRng } from "@idpo/data";
import { type PairShardTask, PairShardTaskSchema, type RunConfig } from "@idpo/proto";

/** KV key of a run's state (Run proto binary). */
export function runKey(runId: string): string {
  return `runs.${runId}`;
}

/** KV key prefix under which the pairs_ready of one iteration's shards are recorded (one key per shard). */
export function shardKeyPrefix(runId: string, iteration: number): string {
  return `shards.${runId}.iter-${iteration}.`;
}

/** KV key recording that shard `shard` of `iteration` has its pairs stored (value: PairsReady binary). */
export function shardKey(runId: string, iteration: number, shard: number): string {
  return `${shardKeyPrefix(runId, iteration)}${shard}`;
}

/** Trainer job ids of a run's stages (idempotency keys). */
export const jobIds = {
  base: (runId: string) => `${runId}-base`,
  improver: (runId: string) => `${runId}-improver`,
  iteration: (runId: string, k: number) => `${runId}-iter-${k}`,
};

/** Checkpoint ids of a run's models. */
export const checkpointIds = {
  base: (runId: string) => `runs/${runId}/base`,
  improver: (runId: string) => `runs/${runId}/improver`,
  iteration: (runId: string, k: number) => `runs/${runId}/iter-${k}/policy`,
};

/** Artifact prefix of iteration k's pair shards (the DPO job's data is `artifact://<this>`). */
export function iterationPrefix(runId: string, k: number): string {
  return `runs/${runId}/iter-${k}/`;
}

/** Artifact of shard i of iteration k (= PairShardTask.output_artifact and its msgId). */
export function shardArtifact(runId: string, k: number, i: number): string {
  return `${iterationPrefix(runId, k)}shard-${i}.pairs`;
}

/** Artifact holding an evaluation's samples (GenerateImagesResponse binary); iteration 0 is the base model. */
export function samplesArtifact(runId: string, k: number): string {
  return k === 0 ? `runs/${runId}/eval/base.samples` : `runs/${runId}/eval/iter-${k}.samples`;
}

/**
 * A 32-bit seed derived from the run's master seed and a purpose label, so that every random choice of a
 * run (prompts, pair seeds, evaluation seeds, training seeds) follows from the one seed and no two purposes
 * share a stream.
 */
export function deriveSeed(master: bigint, ...parts: (string | number | bigint)[]): number {
  const h = createHash("sha256").update(`idpo:${master}`);
  for (const p of parts) h.update(`:${p}`);
  return h.digest().readUInt32LE(0);
}

/** Number of shards an iteration of `pairs` pairs splits into. */
export function shardCount(config: RunConfig): number {
  return Math.ceil(config.pairsPerIteration / config.shardSize);
}

/**
 * The PairShardTasks of iteration k. Prompts cycle through the train prompts in a freshly shuffled order per
 * pass; each pair gets its own seed; both come from the run's seed and k only, so a resumed controller
 * plans exactly the same shards.
 */
export function planShards(
  runId: string,
  config: RunConfig,
  trainPrompts: readonly string[],
  k: number,
  checkpoints: { policy: string; improver: string },
): PairShardTask[] {
  if (trainPrompts.length === 0) throw new Error("planShards: no train prompts");
  const rng = new DataRng(deriveSeed(config.seed, "pairs", k));
  const prompts: string[] = [];
  const seeds: bigint[] = [];
  let order: string[] = [];
  let next = 0;
  for (let j = 0; j < config.pairsPerIteration; j++) {
    if (next >= order.length) {
      order = rng.shuffle(trainPrompts.slice());
      next = 0;
    }
    prompts.push(order[next++]);
    seeds.push(BigInt(rng.int(2 ** 31)));
  }
  const count = shardCount(config);
  const tasks: PairShardTask[] = [];
  for (let i = 0; i < count; i++) {
    const lo = i * config.shardSize;
    const hi = Math.min(config.pairsPerIteration, lo + config.shardSize);
    tasks.push(
      create(PairShardTaskSchema, {
        runId,
        iteration: k,
        shardIndex: i,
        shardCount: count,
        prompts: prompts.slice(lo, hi),
        seeds: seeds.slice(lo, hi),
        policyCheckpointId: checkpoints.policy,
        improverCheckpointId: checkpoints.improver,
        steps: config.samplingSteps,
        guidanceScale: config.guidanceScale,
        textGuidanceScale: config.textGuidanceScale,
        imageGuidanceScale: config.imageGuidanceScale,
        improveStrength: config.improveStrength,
        outputArtifact: shardArtifact(runId, k, i),
      }),
    );
  }
  return tasks;
}
