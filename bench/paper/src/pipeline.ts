import { create, toJson } from "@bufbuild/protobuf";
import {
  PRETRAINED_BASE_ID,
  PRETRAINED_BASE_SEED,
  PRETRAINED_DATASET,
  PRETRAINED_IMPROVER_ID,
  parseDataUri,
} from "@idpo/mesh";
import {
  JobKind,
  JobSpecSchema,
  LrSchedule,
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
  validate,
} from "./evaluate.js";
import { deriveSeed } from "./prompt-sets.js";
import type { RecipeCurve } from "./recipe-curve.js";
import type { IterationSeries, ModelEval, PairSizeRow, TrainMetrics } from "./results.js";
import { inputsHash } from "./stage-runner.js";

/** What every stage of the benchmark needs. */
export interface PipelineContext extends EvalContext {
  cfg: PaperConfig;
  /** Progress lines (stderr). */
  progress: (line: string) => void;
}

/** A trained checkpoint and the final metrics of the job that made it. */
export interface TrainedModel {
  checkpointId: string;
  /** Its content hash (what the stages that read it depend on). */
  sha256: string;
  metrics: TrainMetrics;
  /** The job's intermediate checkpoints (`checkpoint_every`), oldest first; empty for a shipped model. */
  checkpoints?: { id: string; step: number }[];
}

/** An iterated run's iterates (1..K) and their jobs' final metrics. */
export interface IteratedRun {
  runId: string;
  checkpoints: string[];
  metrics: TrainMetrics[];
}

/** The offline dataset's shapes-world parameters (train prompts only). */
export function datasetSpec(cfg: PaperConfig, seed: number): { pairs: number; size: number; seed: number } {
  if (cfg.startFrom === "pretrained") {
    const d = parseDataUri(PRETRAINED_DATASET, "PRETRAINED_DATASET");
    if (d.kind !== "shapes")
      throw new Error(`PRETRAINED_DATASET ${PRETRAINED_DATASET} is not a shapes:// dataset`);
    return { pairs: d.pairs, size: d.size, seed: d.seed };
  }
  return { pairs: cfg.offlinePairs, size: cfg.imageSize, seed: deriveSeed(seed, "offline-data") };
}

/**
 * The shapes:// URI of the offline dataset (generated deterministically by the trainer): the shipped
 * models' own dataset when the benchmark starts from them, else one drawn from the seed.
 */
export function datasetUri(cfg: PaperConfig, seed: number): string {
  if (cfg.startFrom === "pretrained") return PRETRAINED_DATASET;
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
    maxGradNorm: s.maxGradNorm,
    promptDropout: s.promptDropout,
    lrSchedule: s.lrSchedule ? LR_SCHEDULES[s.lrSchedule] : LrSchedule.UNSPECIFIED,
    minLrRatio: s.minLrRatio,
    ...("beta" in s ? { beta: s.beta, sftWeight: s.sftWeight, dpoPositiveLambda: s.dpoPositiveLambda } : {}),
    ...extra,
  });
}

const LR_SCHEDULES = {
  constant: LrSchedule.CONSTANT,
  cosine: LrSchedule.COSINE,
  linear: LrSchedule.LINEAR,
} as const;

/** The content hashes of the checkpoints a stage reads (empty ids are skipped). */
async function checkpointInputs(
  ctx: PipelineContext,
  ids: readonly string[],
): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const id of ids) if (id) out[id] = await ctx.mesh.checkpointSha(id);
  return out;
}

/**
 * A shipped checkpoint as a stage result (the benchmark's `startFrom: "pretrained"`): its id and content
 * hash, no training metrics.
 */
export async function pretrainedModel(ctx: PipelineContext, id: string): Promise<TrainedModel> {
  return { checkpointId: id, sha256: await ctx.mesh.checkpointSha(id), metrics: {} };
}

function metricsOf(m: Record<string, number> | { [k: string]: number }): TrainMetrics {
  const out: TrainMetrics = {};
  for (const [k, v] of Object.entries(m)) if (Number.isFinite(v)) out[k] = v;
  return out;
}

/**
 * Runs one trainer job as a stage (keyed by the job spec and the content of the checkpoints it starts
 * from); the result is its final checkpoint and metrics.
 */
export async function trainStage(
  ctx: PipelineContext,
  stage: string,
  label: string,
  init: Parameters<typeof create<typeof JobSpecSchema>>[1],
): Promise<TrainedModel> {
  const spec = create(JobSpecSchema, init);
  const inputs = {
    spec: toJson(JobSpecSchema, spec),
    checkpoints: await checkpointInputs(ctx, [spec.initCheckpointId, spec.referenceCheckpointId]),
  };
  // The Trainer is idempotent on job ids: a stage whose inputs changed is a new job.
  spec.jobId = `${spec.jobId}-${inputsHash(inputs).slice(0, 6)}`;
  return ctx.runner.run(stage, inputs, async () => {
    ctx.progress(`${label}: training (${JobKind[spec.kind]}, ${spec.training?.steps} steps)`);
    const job = await ctx.mesh.runJob(spec, label);
    const ckpt = job.finalCheckpoint!;
    return {
      checkpointId: ckpt.id,
      sha256: ckpt.sha256,
      metrics: metricsOf(job.metrics),
      checkpoints: job.checkpoints.map((c) => ({ id: c.id, step: Number(c.step) })),
    };
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
  /** Offline dataset pairs mixed into each iteration (ITERATIVE_DPO; default 0, none). */
  offlinePairs?: number;
  /** Seed of the run (pairs, prompts, training seeds derive from it). */
  seed: number;
}

/**
 * Runs an iterated method through the Controller as a stage (keyed by the run's config and the content
 * of the checkpoints it starts from); the result is its K iterates.
 */
export async function iteratedStage(
  ctx: PipelineContext,
  stage: string,
  runId: string,
  label: string,
  models: { base: string; improver: string },
  o: IteratedOptions,
): Promise<IteratedRun> {
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
    offlinePairsPerIteration: o.offlinePairs ?? 0,
    seed: BigInt(o.seed),
    ...controllerEval(ctx),
  });
  // The run's name is a label (one run can serve two tables under two names), not an input.
  const { name: _label, ...settings } = toJson(RunConfigSchema, config) as Record<string, unknown>;
  const inputs = {
    runId,
    config: settings,
    checkpoints: await checkpointInputs(ctx, [
      config.baseCheckpointId,
      config.improverCheckpointId,
      config.startCheckpointId,
    ]),
  };
  // The Controller is idempotent on run ids: a stage whose inputs changed is a new run.
  const id = `${runId}-${inputsHash(inputs).slice(0, 6)}`;
  if (id.length > 63) throw new Error(`run id ${JSON.stringify(id)} is longer than 63 characters`);
  return ctx.runner.run(stage, inputs, async () => {
    ctx.progress(`${label}: controller run ${id} (${o.iterations} iterations)`);
    const run: Run = await ctx.mesh.runController(id, config, label);
    if (run.iterations.length !== o.iterations || run.iterations.some((it) => !it.checkpoint)) {
      throw new Error(
        `${label}: run ${id} finished with ${run.iterations.length} iterations, expected ${o.iterations}`,
      );
    }
    return {
      runId: id,
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
  /** The base model's learning curve on validation prompts (when it was trained here). */
  baseCurve?: { step: number; reward: number; ci: number }[];
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

/** Validation reward of each of the base job's checkpoints, by step, its last one included. */
async function learningCurve(
  ctx: PipelineContext,
  base: TrainedModel,
): Promise<{ step: number; reward: number; ci: number }[]> {
  const points = [...(base.checkpoints ?? [])];
  if (!points.some((c) => c.id === base.checkpointId))
    points.push({ id: base.checkpointId, step: ctx.cfg.base.steps });
  const out: { step: number; reward: number; ci: number }[] = [];
  for (const p of points.sort((a, b) => a.step - b.step)) {
    const v = await validate(ctx, `base-curve/step-${p.step}`, p.id);
    out.push({ step: p.step, reward: v.reward, ci: v.ci });
  }
  return out;
}

/**
 * A PRETRAIN job of the `base` recipe on `data` as the stage `name` (job `<tag>-<name>`, checkpoint
 * `bench/<tag>/<name>`), writing `baseCurvePoints` evenly spaced checkpoints for the learning curve.
 */
function trainBase(
  ctx: PipelineContext,
  name: string,
  label: string,
  data: string,
  seed: number,
): Promise<TrainedModel> {
  const { cfg, tag } = ctx;
  return trainStage(ctx, name, label, {
    jobId: `${tag}-${name}`,
    kind: JobKind.PRETRAIN,
    data: [data],
    modelPreset: cfg.modelPreset,
    training: trainingConfig(
      cfg.base,
      seed,
      cfg.baseCurvePoints > 0 ? { checkpointEvery: Math.floor(cfg.base.steps / cfg.baseCurvePoints) } : {},
    ),
    outputCheckpointId: `bench/${tag}/${name}`,
  });
}

/**
 * The shipped base's learning curve (`startFrom: "pretrained"`): its recipe (`cfg.base` on the shipped
 * dataset, with the seed that made it) retrained with `baseCurvePoints` evenly spaced checkpoints, each
 * measured on the validation prompts. Nothing else reads this stage, so it runs last, and once per
 * benchmark: in the seed whose number is the recipe's (measuresRecipeCurve), and only when the report
 * directory has no curve measured with the same inputs (recipe-curve.ts).
 */
export async function pretrainedRecipeCurve(ctx: PipelineContext): Promise<RecipeCurve> {
  ctx.progress("the report is written; now the shipped base's recipe, retrained for its learning curve");
  const base = await trainBase(
    ctx,
    "base-recipe",
    "the shipped base's recipe, retrained for its curve",
    PRETRAINED_DATASET,
    PRETRAINED_BASE_SEED,
  );
  const shipped = await validate(ctx, BASE_KEY, PRETRAINED_BASE_ID);
  return {
    baseCurve: await learningCurve(ctx, base),
    baseCurveReference: { label: "the shipped base", reward: shipped.reward, ci: shipped.ci },
  };
}

/** The base model (PRETRAIN on every offline image) and the improvement model trained from it, for this seed. */
async function trainBaseAndImprover(
  ctx: PipelineContext,
  data: string,
): Promise<{ base: TrainedModel; improver: TrainedModel }> {
  const { cfg, seed, tag } = ctx;
  const base = await trainBase(ctx, "base", "base model", data, deriveSeed(seed, "base"));
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
  return { base, improver };
}

/**
 * The paper, faithfully: base → improver (shipped or trained, as `cfg.startFrom` says) → SFT, offline DPO, SPIN ×K, ours ×K (from the base and from SPIN's
 * last iterate; reference = base) → evaluations, the one-shot fixer, and ours with three pair sizes.
 */
export async function runFaithful(ctx: PipelineContext): Promise<FaithfulResults> {
  const { cfg, seed } = ctx;
  const data = datasetUri(cfg, seed);
  // Every step adds its evaluations and metrics here, in the order the stages run.
  const models: Record<string, ModelEval> = {};
  const trainMetrics: Record<string, TrainMetrics> = {};
  const { base, improver } =
    cfg.startFrom === "pretrained"
      ? {
          base: await pretrainedModel(ctx, PRETRAINED_BASE_ID),
          improver: await pretrainedModel(ctx, PRETRAINED_IMPROVER_ID),
        }
      : await trainBaseAndImprover(ctx, data);
  const baseCurve = cfg.startFrom === "scratch" ? await learningCurve(ctx, base) : undefined;
  models[BASE_KEY] = await evaluateModel(ctx, BASE_KEY, "Base (pretrained)", base.checkpointId);
  models[FIX_KEY] = await evaluateFix(ctx, improver.checkpointId);
  models[FIX_SDEDIT_KEY] = await evaluateFix(ctx, improver.checkpointId, cfg.sampling.sdeditStrength);
  await offlineBaselines(ctx, data, base, models, trainMetrics);
  const ids = { base: base.checkpointId, improver: improver.checkpointId };
  const iterated = await iteratedMethods(ctx, ids, models, trainMetrics);
  const pairSizes = await pairSizeRuns(ctx, ids, iterated.oursKeys, models, trainMetrics);
  const { spinKeys, oursKeys, oursSpinKeys, ours } = iterated;
  return {
    base,
    improver,
    models,
    mainRows: [BASE_KEY, "sft", "dpo", ...spinKeys, ...oursKeys, ...oursSpinKeys],
    series: faithfulSeries(cfg, iterated, pairSizes),
    pairSizes,
    trainMetrics,
    ours: { ...ours, checkpoints: ours.checkpoints.slice(0, cfg.ours.iterations) },
    baseCurve,
  };
}

/** The offline baselines from the base, each trained then evaluated: SFT on winners and Diffusion-DPO. */
async function offlineBaselines(
  ctx: PipelineContext,
  data: string,
  base: TrainedModel,
  models: Record<string, ModelEval>,
  trainMetrics: Record<string, TrainMetrics>,
): Promise<void> {
  const { cfg, seed, tag } = ctx;
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
}

/** The iterated methods' runs and the keys of their evaluated iterates. */
interface IteratedMethods {
  spinKeys: string[];
  ours: IteratedRun;
  oursKeys: string[];
  oursSpinKeys: string[];
}

/** SPIN, ours from the base, and ours from SPIN's last iterate, each run then its iterates evaluated. */
async function iteratedMethods(
  ctx: PipelineContext,
  ids: { base: string; improver: string },
  models: Record<string, ModelEval>,
  trainMetrics: Record<string, TrainMetrics>,
): Promise<IteratedMethods> {
  const { cfg, seed } = ctx;
  const spin = await iteratedStage(ctx, "spin", runIdFor(cfg, seed, "spin"), "SPIN-Diffusion", ids, {
    method: RunMethod.SPIN,
    iterations: cfg.spin.iterations,
    training: trainingConfig(cfg.spin, 0),
    seed: deriveSeed(seed, "spin"),
  });
  const spinKeys = await evaluateIterates(ctx, "spin", "SPIN-Diffusion", spin, models, trainMetrics);
  const oursTraining = trainingConfig(cfg.ours, 0);
  const ours = await iteratedStage(ctx, "ours", runIdFor(cfg, seed, "ours"), "Ours", ids, {
    method: RunMethod.ITERATIVE_DPO,
    iterations: cfg.ours.iterations,
    training: oursTraining,
    pairs: cfg.ours.pairsPerIteration,
    seed: deriveSeed(seed, "ours"),
  });
  const oursKeys = await evaluateIterates(ctx, "ours", "Ours from base", ours, models, trainMetrics);
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
      startCheckpointId: spin.checkpoints[spin.checkpoints.length - 1],
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
  return { spinKeys, ours, oursKeys, oursSpinKeys };
}

/**
 * Table 2: ours from the base with each configured pair count (the faithful count is the run of Table 1,
 * `oursKeys`; the others share its training and seed).
 */
async function pairSizeRuns(
  ctx: PipelineContext,
  ids: { base: string; improver: string },
  oursKeys: string[],
  models: Record<string, ModelEval>,
  trainMetrics: Record<string, TrainMetrics>,
): Promise<PairSizeRow[]> {
  const { cfg, seed } = ctx;
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
        training: trainingConfig(cfg.ours, 0),
        pairs: n,
        seed: deriveSeed(seed, "ours"),
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
  return pairSizes;
}

/** The reward-per-iteration series: SPIN, ours from the base and from SPIN, and the other pair counts (six at most). */
function faithfulSeries(
  cfg: PaperConfig,
  { spinKeys, oursKeys, oursSpinKeys }: IteratedMethods,
  pairSizes: readonly PairSizeRow[],
): IterationSeries[] {
  return [
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
  ].slice(0, 6);
}
