import { clone, create } from "@bufbuild/protobuf";
import { DataRng } from "@idpo/data";
import { windowedDataUri } from "@idpo/mesh";
import {
  JobKind,
  type JobSpec,
  JobSpecSchema,
  type PairShardTask,
  PairShardTaskSchema,
  ReferencePolicy,
  type Run,
  type RunConfig,
  RunMethod,
  type TrainingConfig,
  TrainingConfigSchema,
} from "@idpo/proto";
import { labelledSeed } from "@idpo/runtime";
import { StageError } from "./run-errors.js";

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
  return labelledSeed("idpo", master, ...parts);
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

/** The next thing a run needs, decided from its stored state alone (so a restarted controller resumes). */
export type Action =
  | { kind: "base" }
  | { kind: "improver" }
  | { kind: "start-iteration"; k: number }
  | { kind: "generate"; k: number }
  | { kind: "train"; k: number }
  | { kind: "evaluate"; k: number }
  | { kind: "finish" };

/** The next action of a non-terminal run. */
export function nextAction(run: Run): Action {
  const cfg = run.config!;
  if (!run.baseCheckpoint) return { kind: "base" };
  if (cfg.method === RunMethod.ITERATIVE_DPO && !run.improverCheckpoint) return { kind: "improver" };
  if (!run.baseEvaluation) return { kind: "evaluate", k: 0 };
  const n = run.iterations.length;
  if (n > 0) {
    const it = run.iterations[n - 1];
    if (cfg.method === RunMethod.ITERATIVE_DPO && it.shardsDone < it.shardsTotal)
      return { kind: "generate", k: n };
    if (!it.checkpoint) return { kind: "train", k: n };
    if (!it.evaluation) return { kind: "evaluate", k: n };
  }
  if (n < cfg.iterations) return { kind: "start-iteration", k: n + 1 };
  return { kind: "finish" };
}

/** True when two actions are the same step (same kind, same iteration). */
export function sameAction(a: Action, b: Action): boolean {
  return a.kind === b.kind && ("k" in a ? a.k : 0) === ("k" in b ? b.k : 0);
}

/** An action as logs and failure messages name it ("train 2", "finish"). */
export function actionName(action: Action): string {
  return `${action.kind}${"k" in action ? ` ${action.k}` : ""}`;
}

/** The policy checkpoint iteration k starts from. */
export function previousPolicy(run: Run, k: number): string {
  if (k === 1) return run.config!.startCheckpointId || run.baseCheckpoint!.id;
  const prev = run.iterations[k - 2]?.checkpoint;
  if (!prev) throw new Error(`run ${run.runId}: iteration ${k - 1} has no checkpoint`);
  return prev.id;
}

/** The models a run trains before its iterations: the base model, then (iterative DPO) the improver. */
export type ModelRole = "base" | "improver";

/** The trainer job of a run's base model (PRETRAIN on the dataset) or improver (IMPROVER from the base). */
export function modelJobSpec(run: Run, role: ModelRole): JobSpec {
  const cfg = run.config!;
  const training = cfg[`${role}Training`]!;
  return create(JobSpecSchema, {
    jobId: jobIds[role](run.runId),
    runId: run.runId,
    kind: role === "base" ? JobKind.PRETRAIN : JobKind.IMPROVER,
    data: [cfg.dataset],
    initCheckpointId: role === "improver" ? run.baseCheckpoint!.id : "",
    modelPreset: cfg.modelPreset,
    training: seeded(training, deriveSeed(cfg.seed, role, training.seed)),
    outputCheckpointId: checkpointIds[role](run.runId),
    iteration: 0,
  });
}

/**
 * Iterative DPO's data for iteration k: its online pairs, then, with offline_pairs_per_iteration = N, a window
 * of N consecutive pairs of the dataset from a start drawn from the run's seed and k (the Trainer takes it
 * modulo the dataset's size and wraps at its end). The start depends on the seed, not only on k, so runs
 * chained one iteration at a time (each with its own seed) also see fresh slices of the offline data.
 */
export function iterationData(cfg: RunConfig, runId: string, k: number): string[] {
  const online = `artifact://${iterationPrefix(runId, k)}`;
  const n = cfg.offlinePairsPerIteration;
  if (n === 0) return [online];
  return [online, windowedDataUri(cfg.dataset, { skip: deriveSeed(cfg.seed, "offline-window", k), take: n })];
}

/** What iteration k's trainer job trains on, with which objective and reference. */
function iterationObjective(run: Run, k: number): { kind: JobKind; data: string[]; ref: string } {
  const cfg = run.config!;
  const init = previousPolicy(run, k);
  const reference = cfg.reference === ReferencePolicy.PREVIOUS ? init : run.baseCheckpoint!.id;
  switch (cfg.method) {
    case RunMethod.ITERATIVE_DPO:
      return { kind: JobKind.DPO, data: iterationData(cfg, run.runId, k), ref: reference };
    case RunMethod.SPIN:
      // SPIN: the previous iterate is both the reference and the source of the losers.
      return { kind: JobKind.SPIN, data: [cfg.dataset], ref: init };
    case RunMethod.DPO_OFFLINE:
      return { kind: JobKind.DPO, data: [cfg.dataset], ref: reference };
    case RunMethod.SFT:
      return { kind: JobKind.SFT, data: [cfg.dataset], ref: "" };
    default:
      throw new StageError(`unknown method ${cfg.method}`);
  }
}

/** The trainer job of iteration k (DPO on the iteration's shards, SPIN, offline DPO or SFT on the dataset). */
export function iterationJobSpec(run: Run, k: number): JobSpec {
  const cfg = run.config!;
  const { kind, data, ref } = iterationObjective(run, k);
  return create(JobSpecSchema, {
    jobId: jobIds.iteration(run.runId, k),
    runId: run.runId,
    kind,
    data,
    initCheckpointId: previousPolicy(run, k),
    referenceCheckpointId: ref,
    modelPreset: cfg.modelPreset,
    training: seeded(cfg.policyTraining!, deriveSeed(cfg.seed, "train", k, cfg.policyTraining!.seed)),
    outputCheckpointId: checkpointIds.iteration(run.runId, k),
    iteration: k,
  });
}

/** A copy of a training config with the job's seed (derived from the run's seed and the stage). */
function seeded(t: TrainingConfig, seed: number): TrainingConfig {
  const out = clone(TrainingConfigSchema, t);
  out.seed = BigInt(seed);
  return out;
}
