import { create } from "@bufbuild/protobuf";
import {
  JobKind,
  JobSpecSchema,
  ReferencePolicy,
  type Run,
  type RunConfig,
  RunConfigSchema,
  RunMethod,
  type TrainingConfig,
  TrainingConfigSchema,
} from "@idpo/proto";
import type { PaperConfig, PreferenceStage, TrainStage } from "./config.js";
import {
  BASE_KEY,
  type EvalContext,
  evaluateFix,
  evaluateModel,
  FIX_KEY,
  FIX_SDEDIT_KEY,
} from "./evaluate.js";
import { deriveSeed } from "./prompt-sets.js";
import type { IterationSeries, ModelEval, PairSizeRow, TrainMetrics } from "./results.js";

/** What every stage of the benchmark needs. */
export interface PipelineContext extends EvalContext {
  cfg: PaperConfig;
  /** Progress lines (stderr). */
  progress: (line: string) => void;
}

/** A trained checkpoint and the final metrics of the job that made it. */
export interface TrainedModel {
  checkpointId: string;
  metrics: TrainMetrics;
}

/** An iterated run's iterates (1..K) and their jobs' final metrics. */
export interface IteratedRun {
  runId: string;
  checkpoints: string[];
  metrics: TrainMetrics[];
}

/** The offline dataset's shapes-world parameters (train prompts only). */
export function datasetSpec(cfg: PaperConfig, seed: number): { pairs: number; size: number; seed: number } {
  return { pairs: cfg.offlinePairs, size: cfg.imageSize, seed: deriveSeed(seed, "offline-data") };
}

/** The shapes:// URI of the offline dataset (generated deterministically by the trainer). */
export function datasetUri(cfg: PaperConfig, seed: number): string {
  const d = datasetSpec(cfg, seed);
  return `shapes://?pairs=${d.pairs}&size=${d.size}&seed=${d.seed}`;
}

/** Controller run ids of this benchmark run: `paper-<config>-s<seed>-<what>` ([a-z0-9-], ≤ 63 characters). */
export function runIdFor(cfg: PaperConfig, seed: number, what: string): string {
  const id = `paper-${cfg.name}-s${seed}-${what}`;
  if (!/^[a-z0-9-]{1,63}$/.test(id)) throw new Error(`run id ${JSON.stringify(id)} is not [a-z0-9-]{1,63}`);
  return id;
}

/** A Trainer TrainingConfig from a stage of the config. */
export function trainingConfig(
  s: TrainStage | PreferenceStage,
  seed: number,
  extra: {
    checkpointEvery?: number;
    improveTaskProbability?: number;
    reconstructTaskProbability?: number;
  } = {},
): TrainingConfig {
  return create(TrainingConfigSchema, {
    steps: s.steps,
    batchSize: s.batchSize,
    learningRate: s.learningRate,
    warmupSteps: s.warmupSteps,
    emaDecay: s.emaDecay ?? 0,
    seed: BigInt(seed),
    ...("beta" in s ? { beta: s.beta } : {}),
    ...extra,
  });
}

function metricsOf(m: Record<string, number> | { [k: string]: number }): TrainMetrics {
  const out: TrainMetrics = {};
  for (const [k, v] of Object.entries(m)) if (Number.isFinite(v)) out[k] = v;
  return out;
}

/** Runs one trainer job as a stage; the result is its final checkpoint and metrics. */
export function trainStage(
  ctx: PipelineContext,
  stage: string,
  label: string,
  spec: Parameters<typeof create<typeof JobSpecSchema>>[1],
): Promise<TrainedModel> {
  return ctx.runner.run(stage, async () => {
    ctx.progress(`${label}: training (${JobKind[spec?.kind ?? 0]}, ${spec?.training?.steps} steps)`);
    const job = await ctx.mesh.runJob(create(JobSpecSchema, spec), label);
    return { checkpointId: job.finalCheckpoint!.id, metrics: metricsOf(job.metrics) };
  });
}

/**
 * The controller's own per-iteration evaluation is reduced to a two-image check on one validation prompt:
 * the benchmark evaluates every iterate itself, on its fixed prompt sets and seeds.
 */
function controllerEval(ctx: PipelineContext): Pick<RunConfig, "evalPrompts" | "evalSamplesPerPrompt"> {
  return { evalPrompts: [ctx.sets.validation.prompts[0]], evalSamplesPerPrompt: 2 };
}

/** Options of an iterated controller run. */
export interface IteratedOptions {
  method: RunMethod.SPIN | RunMethod.ITERATIVE_DPO;
  /** Iterations K. */
  iterations: number;
  /** Per-iteration training. */
  training: TrainingConfig;
  /** Start from this policy instead of the base. */
  startCheckpointId?: string;
  /** Online pairs per iteration (ITERATIVE_DPO). */
  pairs?: number;
  /** DPO reference (default: the base). */
  reference?: ReferencePolicy;
  /** Improver strength for the online winners (default: unset, i.e. 1, from pure noise). */
  improveStrength?: number;
  /** Seed of the run (pairs, prompts, training seeds derive from it). */
  seed: number;
}

/** Runs an iterated method through the Controller as a stage; the result is its K iterates. */
export function iteratedStage(
  ctx: PipelineContext,
  stage: string,
  runId: string,
  label: string,
  models: { base: string; improver: string },
  o: IteratedOptions,
): Promise<IteratedRun> {
  return ctx.runner.run(stage, async () => {
    const { cfg } = ctx;
    const iterative = o.method === RunMethod.ITERATIVE_DPO;
    const config = create(RunConfigSchema, {
      name: `${label} (bench paper ${cfg.name})`,
      method: o.method,
      dataset: datasetUri(cfg, ctx.seed),
      modelPreset: cfg.modelPreset,
      baseCheckpointId: models.base,
      improverCheckpointId: iterative ? models.improver : "",
      policyTraining: o.training,
      iterations: o.iterations,
      pairsPerIteration: iterative ? (o.pairs ?? cfg.ours.pairsPerIteration) : 0,
      shardSize: cfg.ours.shardSize,
      startCheckpointId: o.startCheckpointId ?? "",
      reference: o.reference ?? ReferencePolicy.BASE,
      samplingSteps: cfg.sampling.steps,
      guidanceScale: cfg.sampling.guidanceScale,
      textGuidanceScale: cfg.sampling.textGuidance,
      imageGuidanceScale: cfg.sampling.imageGuidance,
      improveStrength: o.improveStrength,
      seed: BigInt(o.seed),
      ...controllerEval(ctx),
    });
    ctx.progress(`${label}: controller run ${runId} (${o.iterations} iterations)`);
    const run: Run = await ctx.mesh.runController(runId, config, label);
    if (run.iterations.length !== o.iterations || run.iterations.some((it) => !it.checkpoint)) {
      throw new Error(
        `${label}: run ${runId} finished with ${run.iterations.length} iterations, expected ${o.iterations}`,
      );
    }
    return {
      runId,
      checkpoints: run.iterations.map((it) => it.checkpoint!.id),
      metrics: run.iterations.map((it) => metricsOf(it.trainMetrics)),
    };
  });
}

/** The faithful part's outcome, for the report and for the search that follows. */
export interface FaithfulResults {
  base: TrainedModel;
  improver: TrainedModel;
  models: Record<string, ModelEval>;
  mainRows: string[];
  series: IterationSeries[];
  pairSizes: PairSizeRow[];
  trainMetrics: Record<string, TrainMetrics>;
  /** ours from the base (the faithful method), for the search. */
  ours: IteratedRun;
}

async function evaluateIterates(
  ctx: PipelineContext,
  prefix: string,
  label: string,
  run: IteratedRun,
  models: Record<string, ModelEval>,
  trainMetrics: Record<string, TrainMetrics>,
): Promise<string[]> {
  const keys: string[] = [];
  for (let k = 1; k <= run.checkpoints.length; k++) {
    const key = `${prefix}/iter-${k}`;
    models[key] = await evaluateModel(ctx, key, `${label}, iter ${k}`, run.checkpoints[k - 1]);
    trainMetrics[`${label} iter ${k}`] = run.metrics[k - 1];
    keys.push(key);
  }
  return keys;
}

/**
 * The paper, faithfully: base → improver → SFT, offline DPO, SPIN ×K, ours ×K (from the base and from SPIN's
 * last iterate; reference = base) → evaluations, the one-shot fixer, and ours with three pair sizes.
 */
export async function runFaithful(ctx: PipelineContext): Promise<FaithfulResults> {
  const { cfg, seed } = ctx;
  const tag = ctx.tag;
  const data = datasetUri(cfg, seed);
  const models: Record<string, ModelEval> = {};
  const trainMetrics: Record<string, TrainMetrics> = {};

  const base = await trainStage(ctx, "base", "base model", {
    jobId: `${tag}-base`,
    kind: JobKind.PRETRAIN,
    data: [data],
    modelPreset: cfg.modelPreset,
    training: trainingConfig(cfg.base, deriveSeed(seed, "base")),
    outputCheckpointId: `bench/${tag}/base`,
  });
  const improver = await trainStage(ctx, "improver", "improvement model", {
    jobId: `${tag}-improver`,
    kind: JobKind.IMPROVER,
    data: [data],
    initCheckpointId: base.checkpointId,
    modelPreset: cfg.modelPreset,
    training: trainingConfig(cfg.improver, deriveSeed(seed, "improver"), {
      improveTaskProbability: cfg.improver.improveTaskProbability,
      reconstructTaskProbability: cfg.improver.reconstructTaskProbability,
    }),
    outputCheckpointId: `bench/${tag}/improver`,
  });
  models[BASE_KEY] = await evaluateModel(ctx, BASE_KEY, "Base (pretrained)", base.checkpointId);
  models[FIX_KEY] = await evaluateFix(ctx, improver.checkpointId);
  models[FIX_SDEDIT_KEY] = await evaluateFix(ctx, improver.checkpointId, cfg.tuning.improveStrength);

  const sft = await trainStage(ctx, "sft", "SFT", {
    jobId: `${tag}-sft`,
    kind: JobKind.SFT,
    data: [data],
    initCheckpointId: base.checkpointId,
    modelPreset: cfg.modelPreset,
    training: trainingConfig(cfg.sft, deriveSeed(seed, "sft")),
    outputCheckpointId: `bench/${tag}/sft`,
  });
  models.sft = await evaluateModel(ctx, "sft", "SFT on winners", sft.checkpointId);
  const dpo = await trainStage(ctx, "dpo", "offline Diffusion-DPO", {
    jobId: `${tag}-dpo`,
    kind: JobKind.DPO,
    data: [data],
    initCheckpointId: base.checkpointId,
    referenceCheckpointId: base.checkpointId,
    modelPreset: cfg.modelPreset,
    training: trainingConfig(cfg.dpo, deriveSeed(seed, "dpo")),
    outputCheckpointId: `bench/${tag}/dpo`,
  });
  trainMetrics["Diffusion-DPO (offline)"] = dpo.metrics;
  models.dpo = await evaluateModel(ctx, "dpo", "Diffusion-DPO (offline)", dpo.checkpointId);

  const ids = { base: base.checkpointId, improver: improver.checkpointId };
  const spin = await iteratedStage(ctx, "spin", runIdFor(cfg, seed, "spin"), "SPIN-Diffusion", ids, {
    method: RunMethod.SPIN,
    iterations: cfg.spin.iterations,
    training: trainingConfig(cfg.spin, 0),
    seed: deriveSeed(seed, "spin"),
  });
  const spinKeys = await evaluateIterates(ctx, "spin", "SPIN-Diffusion", spin, models, trainMetrics);

  const oursTraining = trainingConfig(cfg.ours, 0);
  const oursSeed = deriveSeed(seed, "ours");
  const ours = await iteratedStage(ctx, "ours", runIdFor(cfg, seed, "ours"), "Ours", ids, {
    method: RunMethod.ITERATIVE_DPO,
    iterations: cfg.ours.iterations,
    training: oursTraining,
    pairs: cfg.ours.pairsPerIteration,
    seed: oursSeed,
  });
  const oursKeys = await evaluateIterates(ctx, "ours", "Ours from base", ours, models, trainMetrics);

  const spinLast = spin.checkpoints[spin.checkpoints.length - 1];
  const oursSpin = await iteratedStage(
    ctx,
    "ours-spin",
    runIdFor(cfg, seed, "ours-spin"),
    "Ours from SPIN",
    ids,
    {
      method: RunMethod.ITERATIVE_DPO,
      iterations: cfg.ours.iterations,
      training: oursTraining,
      pairs: cfg.ours.pairsPerIteration,
      startCheckpointId: spinLast,
      seed: deriveSeed(seed, "ours-spin"),
    },
  );
  const oursSpinKeys = await evaluateIterates(
    ctx,
    "ours-spin",
    "Ours from SPIN",
    oursSpin,
    models,
    trainMetrics,
  );

  const pairSizes: PairSizeRow[] = [];
  for (const n of cfg.ours.pairSizes) {
    if (n === cfg.ours.pairsPerIteration) {
      pairSizes.push({ pairs: n, keys: oursKeys });
      continue;
    }
    const run = await iteratedStage(
      ctx,
      `pairs-${n}`,
      runIdFor(cfg, seed, `pairs-${n}`),
      `Ours, ${n} pairs`,
      ids,
      {
        method: RunMethod.ITERATIVE_DPO,
        iterations: cfg.ours.iterations,
        training: oursTraining,
        pairs: n,
        seed: oursSeed,
      },
    );
    pairSizes.push({
      pairs: n,
      keys: await evaluateIterates(
        ctx,
        `pairs-${n}`,
        `Ours from base, ${n} pairs`,
        run,
        models,
        trainMetrics,
      ),
    });
  }

  const K = cfg.ours.iterations;
  return {
    base,
    improver,
    models,
    mainRows: [BASE_KEY, "sft", "dpo", ...spinKeys, ...oursKeys, ...oursSpinKeys],
    series: [
      { label: "SPIN", keys: [BASE_KEY, ...spinKeys], firstIteration: 0 },
      { label: "Ours from base", keys: [BASE_KEY, ...oursKeys], firstIteration: 0 },
      {
        label: "Ours from SPIN",
        keys: [spinKeys[spinKeys.length - 1], ...oursSpinKeys],
        firstIteration: cfg.spin.iterations,
      },
      ...pairSizes
        .filter((p) => p.pairs !== cfg.ours.pairsPerIteration)
        .map((p) => ({ label: `Ours, ${p.pairs} pairs`, keys: [BASE_KEY, ...p.keys], firstIteration: 0 })),
    ].slice(0, 6),
    pairSizes,
    trainMetrics,
    ours: { ...ours, checkpoints: ours.checkpoints.slice(0, K) },
  };
}
