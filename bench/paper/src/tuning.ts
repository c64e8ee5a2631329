import { JobKind, ReferencePolicy, RunMethod } from "@idpo/proto";
import { BASE_KEY, evaluateModel, evaluatePolicyThenFix, type ValidationEval, validate } from "./evaluate.js";
import {
  type FaithfulResults,
  type IteratedRun,
  iteratedStage,
  type PipelineContext,
  runIdFor,
  trainingConfig,
  trainStage,
} from "./pipeline.js";
import { deriveSeed } from "./prompt-sets.js";
import type { ModelEval, PaperResults, TrainMetrics, VariantResult } from "./results.js";

/** The settings of the iterative method that the search varies (the faithful method's are `cfg.ours`'s). */
export interface MethodSettings {
  /** Online pairs per iteration. */
  pairs: number;
  /** DPO optimiser steps per iteration. */
  steps: number;
  /** DPO learning rate. */
  learningRate: number;
  /** DPO β. */
  beta: number;
  /** DPO reference: the base (the paper) or the previous iterate (refreshed). */
  reference: "base" | "previous";
  /** After each DPO iteration, an SFT job on that iteration's improved winners. */
  sftOnWinners: boolean;
  /** Intermediate checkpoints each iteration; the best on validation (or the start, if none is better) is kept. */
  earlyStop: boolean;
  /** Improver strength for the online winners (1: from pure noise, the paper; below 1: SDEdit from the loser). */
  improveStrength: number;
  /** RPO's likelihood weight on the winners beside the DPO term (0: plain DPO). */
  sftWeight: number;
  /** DPO-Positive's λ (0: plain DPO). */
  dpoPositiveLambda: number;
  /** Offline dataset pairs mixed into each iteration beside its online pairs (0: none, the paper). */
  offlinePairs: number;
}

/** One change (or combination of changes) to the faithful iterative method. */
export interface VariantSpec extends MethodSettings {
  /** Stable key ([a-z0-9-]); part of run ids and stage names. */
  key: string;
  /** Short name. */
  label: string;
  /** What it changes, in words. */
  change: string;
}

/** A variant as the configuration lists it: a key, a name, and the settings it changes. */
export type VariantChange = { key: string; label: string } & Partial<MethodSettings>;

/** The faithful method as a VariantSpec (the baseline every variant changes something of). */
export function faithfulSpec(ctx: PipelineContext): VariantSpec {
  const o = ctx.cfg.ours;
  return {
    key: "faithful",
    label: "faithful",
    change: "none: the paper's method as configured",
    pairs: o.pairsPerIteration,
    steps: o.steps,
    learningRate: o.learningRate,
    beta: o.beta,
    reference: "base",
    sftOnWinners: false,
    earlyStop: false,
    improveStrength: 1,
    sftWeight: o.sftWeight ?? 0,
    dpoPositiveLambda: o.dpoPositiveLambda ?? 0,
    offlinePairs: 0,
  };
}

/** The settings in the order changes are named, each with how one change of it reads. */
const CHANGE_WORDS: { [K in keyof MethodSettings]: (v: MethodSettings[K], tuning: TuningWords) => string } = {
  improveStrength: (v) => `SDEdit winners (strength ${v})`,
  pairs: (v) => `${v} pairs`,
  steps: (v) => `${v} steps per iteration`,
  beta: (v) => `β ${v}`,
  learningRate: (v) => `lr ${v}`,
  reference: (v) => (v === "previous" ? "refreshed reference" : "reference = base"),
  sftOnWinners: (v, t) =>
    v ? `SFT on improved winners (${t.sftSteps} steps, lr ${t.sftLearningRate})` : "no SFT on winners",
  earlyStop: (v, t) => (v ? `early stopping (${t.earlyStopCheckpoints} checkpoints)` : "no early stopping"),
  sftWeight: (v) => `RPO likelihood term (α ${v})`,
  dpoPositiveLambda: (v) => `DPO-Positive (λ ${v})`,
  offlinePairs: (v) => `${v} offline pairs mixed in`,
};

/** What the change words need of the tuning config. */
type TuningWords = { sftSteps: number; sftLearningRate: number; earlyStopCheckpoints: number };

/** "SDEdit winners (strength 0.6) + RPO likelihood term (α 1)": what `spec` changes of `faithful`. */
export function describeChange(faithful: MethodSettings, spec: MethodSettings, t: TuningWords): string {
  const parts: string[] = [];
  for (const k of Object.keys(CHANGE_WORDS) as (keyof MethodSettings)[]) {
    if (spec[k] !== faithful[k])
      parts.push((CHANGE_WORDS[k] as (v: unknown, t: TuningWords) => string)(spec[k], t));
  }
  return parts.length > 0 ? parts.join(" + ") : "none";
}

/** The variants the search tries, from the configuration's list. */
export function variantSpecs(ctx: PipelineContext): VariantSpec[] {
  const f = faithfulSpec(ctx);
  const t = ctx.cfg.tuning;
  const out = t.variants.map((v) => {
    const spec: VariantSpec = { ...f, ...v, change: "" };
    spec.change = describeChange(f, spec, t);
    return spec;
  });
  // With one iteration the previous iterate is the base: a refreshed reference changes nothing.
  return t.iterations < 2 ? out.filter((v) => v.reference === "base") : out;
}

/**
 * The combination of every change that beat the faithful method's final validation reward (each setting
 * from the best variant that changed it); undefined when fewer than two variants helped.
 */
export function combineHelpful(
  faithful: VariantSpec,
  variants: readonly { spec: VariantSpec; finalReward: number }[],
  faithfulFinal: number,
  t: TuningWords,
): VariantSpec | undefined {
  const helpful = variants
    .filter((v) => v.finalReward > faithfulFinal)
    .sort((a, b) => b.finalReward - a.finalReward);
  if (helpful.length < 2) return undefined;
  const c: VariantSpec = { ...faithful, key: "combined", label: "combined", change: "" };
  const set = new Set<keyof MethodSettings>();
  for (const { spec } of helpful) {
    for (const k of Object.keys(CHANGE_WORDS) as (keyof MethodSettings)[]) {
      if (spec[k] !== faithful[k] && !set.has(k)) {
        (c as unknown as Record<string, unknown>)[k] = spec[k];
        set.add(k);
      }
    }
  }
  c.change = describeChange(faithful, c, t);
  return c;
}

/** The run's improve_strength: unset for the faithful 1, so faithful runs keep their configs. */
function runStrength(spec: VariantSpec): number | undefined {
  return spec.improveStrength === 1 ? undefined : spec.improveStrength;
}

/** A variant's iterates and measurements. */
interface VariantRun {
  spec: VariantSpec;
  result: VariantResult;
  /** The last iterate's validation (its checkpointId is the variant's final checkpoint). */
  finalVal: ValidationEval;
}

function toVariantResult(
  spec: VariantSpec,
  start: ValidationEval,
  steps: ValidationEval[],
  metrics: TrainMetrics[],
): VariantResult {
  const all = [start, ...steps];
  return {
    key: spec.key,
    label: spec.label,
    change: spec.change,
    validation: all.map((v) => v.reward),
    validationCi: all.map((v) => v.ci),
    validationVendi: all.map((v) => v.vendi),
    trainMetrics: metrics,
    checkpoints: steps.map((v) => v.checkpointId),
  };
}

/**
 * Runs a variant for `iterations` iterations from the base. Variants without per-iteration steps of their
 * own are one K-iteration controller run with the faithful run's seed (so iteration 1 sees the same pairs);
 * the others are chained one-iteration runs with an SFT job or a checkpoint choice between them.
 */
async function runVariant(
  ctx: PipelineContext,
  spec: VariantSpec,
  ids: { base: string; improver: string },
  startVal: ValidationEval,
  faithful: FaithfulResults,
): Promise<VariantRun> {
  const stage = variantStage(ctx, spec);
  if (!spec.sftOnWinners && !spec.earlyStop && spec.reference === "base")
    return runVariantAtOnce(ctx, spec, ids, startVal, stage);
  return runVariantChained(ctx, spec, ids, startVal, faithful, stage);
}

/** A variant's per-iteration DPO settings: `cfg.ours` with the variant's optimisation. */
type VariantStage = PipelineContext["cfg"]["ours"];

function variantStage(ctx: PipelineContext, spec: VariantSpec): VariantStage {
  return {
    ...ctx.cfg.ours,
    steps: spec.steps,
    learningRate: spec.learningRate,
    beta: spec.beta,
    sftWeight: spec.sftWeight,
    dpoPositiveLambda: spec.dpoPositiveLambda,
  };
}

/** Steps between early stopping's intermediate checkpoints (0: the variant does not stop early). */
function earlyStopEvery(ctx: PipelineContext, spec: VariantSpec, stage: VariantStage): number {
  return spec.earlyStop ? Math.max(1, Math.floor(stage.steps / ctx.cfg.tuning.earlyStopCheckpoints)) : 0;
}

/** Whether `spec` has the faithful method's settings except (perhaps) `except`. */
function sameExcept(spec: VariantSpec, faithful: VariantSpec, except: keyof VariantSpec): boolean {
  return (Object.keys(CHANGE_WORDS) as (keyof MethodSettings)[]).every(
    (k) => k === except || spec[k] === faithful[k],
  );
}

/** The DPO reference of the variant's runs. */
function referencePolicy(spec: VariantSpec): ReferencePolicy {
  return spec.reference === "previous" ? ReferencePolicy.PREVIOUS : ReferencePolicy.BASE;
}

/** A variant as one K-iteration controller run, each iterate then measured on validation. */
async function runVariantAtOnce(
  ctx: PipelineContext,
  spec: VariantSpec,
  ids: { base: string; improver: string },
  startVal: ValidationEval,
  stage: VariantStage,
): Promise<VariantRun> {
  const { cfg, seed } = ctx;
  const K = cfg.tuning.iterations;
  const f = faithfulSpec(ctx);
  // Only the pair count changed and Table 2 already ran it for at least as many iterations: the same run.
  const table2 =
    K <= cfg.ours.iterations &&
    cfg.ours.pairSizes.includes(spec.pairs) &&
    spec.pairs !== f.pairs &&
    sameExcept(spec, f, "pairs");
  const run = table2
    ? await iteratedStage(
        ctx,
        `pairs-${spec.pairs}`,
        runIdFor(cfg, seed, `pairs-${spec.pairs}`),
        `search: ${spec.label}`,
        ids,
        {
          method: RunMethod.ITERATIVE_DPO,
          iterations: cfg.ours.iterations,
          training: trainingConfig(cfg.ours, 0),
          pairs: spec.pairs,
          seed: deriveSeed(seed, "ours"),
        },
      )
    : await iteratedStage(
        ctx,
        `tune/${spec.key}`,
        runIdFor(cfg, seed, `t-${spec.key}`),
        `search: ${spec.label}`,
        ids,
        {
          method: RunMethod.ITERATIVE_DPO,
          iterations: K,
          training: trainingConfig(stage, 0),
          pairs: spec.pairs,
          reference: referencePolicy(spec),
          improveStrength: runStrength(spec),
          offlinePairs: spec.offlinePairs,
          seed: deriveSeed(seed, "ours"),
        },
      );
  const metrics: TrainMetrics[] = [];
  const vals: ValidationEval[] = [];
  for (let k = 1; k <= K; k++) {
    vals.push(await validate(ctx, `tune/${spec.key}/iter-${k}`, run.checkpoints[k - 1]));
    metrics.push(run.metrics[k - 1]);
  }
  return {
    spec,
    result: toVariantResult(spec, startVal, vals, metrics),
    finalVal: vals[K - 1],
  };
}

/** One iteration of a chained variant: the checkpoint it keeps, its validation, its DPO job's metrics. */
export interface ChainStep {
  checkpointId: string;
  val: ValidationEval;
  metrics: TrainMetrics;
}

/** A variant as K chained one-iteration runs, each from the checkpoint the previous one kept. */
async function runVariantChained(
  ctx: PipelineContext,
  spec: VariantSpec,
  ids: { base: string; improver: string },
  startVal: ValidationEval,
  faithful: FaithfulResults,
  stage: VariantStage,
): Promise<VariantRun> {
  const K = ctx.cfg.tuning.iterations;
  const metrics: TrainMetrics[] = [];
  const vals: ValidationEval[] = [];
  let current = ids.base;
  let currentVal = startVal;
  const every = earlyStopEvery(ctx, spec, stage);
  // A refreshed reference is the base in iteration 1: that iteration is the faithful run's own.
  const reuseFirst =
    spec.reference === "previous" &&
    sameExcept(spec, faithfulSpec(ctx), "reference") &&
    faithful.ours.checkpoints.length > 0;
  for (let k = 1; k <= K; k++) {
    const step: ChainStep =
      k === 1 && reuseFirst
        ? await faithfulFirstIteration(ctx, faithful)
        : await chainIteration(ctx, spec, ids, stage, every, k, current, currentVal);
    metrics.push(step.metrics);
    current = step.checkpointId;
    currentVal = step.val;
    vals.push(step.val);
  }
  return { spec, result: toVariantResult(spec, startVal, vals, metrics), finalVal: currentVal };
}

/** The faithful run's first iterate as a chained variant's first iteration. */
async function faithfulFirstIteration(ctx: PipelineContext, faithful: FaithfulResults): Promise<ChainStep> {
  const checkpointId = faithful.ours.checkpoints[0];
  const val = await validate(ctx, "ours/iter-1", checkpointId);
  return { checkpointId, val, metrics: faithful.ours.metrics[0] };
}

/** Iteration `k` of a chained variant from `current`: its DPO run, then the SFT job or checkpoint choice. */
async function chainIteration(
  ctx: PipelineContext,
  spec: VariantSpec,
  ids: { base: string; improver: string },
  stage: VariantStage,
  every: number,
  k: number,
  current: string,
  currentVal: ValidationEval,
): Promise<ChainStep> {
  const { cfg, seed } = ctx;
  const runId = runIdFor(cfg, seed, `t-${spec.key}-${k}`);
  const run: IteratedRun = await iteratedStage(
    ctx,
    `tune/${spec.key}/iter-${k}`,
    runId,
    `search: ${spec.label}, iteration ${k}`,
    ids,
    {
      method: RunMethod.ITERATIVE_DPO,
      iterations: 1,
      training: trainingConfig(stage, 0, every > 0 ? { checkpointEvery: every } : {}),
      pairs: spec.pairs,
      startCheckpointId: current,
      reference: referencePolicy(spec),
      improveStrength: runStrength(spec),
      offlinePairs: spec.offlinePairs,
      seed: deriveSeed(seed, `tune-chain:${k}`),
    },
  );
  const metrics = run.metrics[0];
  let candidate = run.checkpoints[0];
  if (spec.sftOnWinners) candidate = await sftOnWinners(ctx, spec, k, run.runId, candidate);
  if (spec.earlyStop) {
    const best = await earlyStopChoice(ctx, spec, k, run.runId, candidate, currentVal);
    return { checkpointId: best.checkpointId, val: best, metrics };
  }
  const val = await validate(ctx, `tune/${spec.key}/iter-${k}`, candidate);
  return { checkpointId: candidate, val, metrics };
}

/** An SFT job on iteration `k`'s improved winners (run `runId`), from `candidate`; its checkpoint. */
async function sftOnWinners(
  ctx: PipelineContext,
  spec: VariantSpec,
  k: number,
  runId: string,
  candidate: string,
): Promise<string> {
  const { cfg, seed } = ctx;
  const sft = await trainStage(ctx, `tune/${spec.key}/iter-${k}/sft`, `search: ${spec.label}, SFT ${k}`, {
    jobId: `${ctx.tag}-t-${spec.key}-${k}-sft`,
    kind: JobKind.SFT,
    data: [`artifact://runs/${runId}/iter-1/`],
    initCheckpointId: candidate,
    modelPreset: cfg.modelPreset,
    training: trainingConfig(
      {
        steps: cfg.tuning.sftSteps,
        batchSize: cfg.sft.batchSize,
        learningRate: cfg.tuning.sftLearningRate,
        warmupSteps: 0,
      },
      deriveSeed(seed, `tune-sft:${spec.key}:${k}`),
    ),
    outputCheckpointId: `bench/${ctx.tag}/tune/${spec.key}/iter-${k}/sft`,
  });
  return sft.checkpointId;
}

/**
 * Early stopping in iteration `k`: the best on validation of the DPO job's intermediate checkpoints and
 * `candidate`, or the iteration's start (`currentVal`) when none beats it.
 */
async function earlyStopChoice(
  ctx: PipelineContext,
  spec: VariantSpec,
  k: number,
  runId: string,
  candidate: string,
  currentVal: ValidationEval,
): Promise<ValidationEval> {
  const job = (await ctx.mesh.clients.trainer.getJob({ jobId: `${runId}-iter-1` })).job;
  const ckpts = (job?.checkpoints ?? []).map((c) => c.id);
  if (!ckpts.includes(candidate)) ckpts.push(candidate);
  let best = currentVal;
  for (const id of ckpts) {
    const v = await validate(
      ctx,
      `ckpt/${id
        .toLowerCase()
        .replace(/@/g, "-at-")
        .replace(/[^a-z0-9._:/-]/g, "-")}`,
      id,
    );
    if (v.reward > best.reward) best = v;
  }
  ctx.progress(
    `search: ${spec.label}, iteration ${k}: kept ${best.checkpointId === currentVal.checkpointId ? "the start" : best.checkpointId} (validation ${best.reward.toFixed(4)})`,
  );
  return best;
}

/** What `extendWhileRising` kept, and the iterations it tried after the best (if any). */
export interface Extension {
  kept: ChainStep[];
  dropped?: { iteration: number; step: ChainStep }[];
}

/**
 * Iterations `from`, `from` + 1, … up to `to`, each from the last iterate, until `patience` iterations in a
 * row fail to beat the best validation reward so far (`start` first). Those through the best are kept, the
 * ones after it dropped. With patience 1 this keeps each iteration that beats the one before and drops the
 * first that does not.
 */
export async function extendWhileRising(
  start: ValidationEval,
  from: number,
  to: number,
  iterate: (k: number, current: ValidationEval) => Promise<ChainStep>,
  patience = 1,
): Promise<Extension> {
  if (!Number.isInteger(patience) || patience < 1)
    throw new Error(`extendWhileRising: patience ${patience} < 1`);
  const tried: ChainStep[] = [];
  let current = start;
  let best = start.reward;
  let keep = 0;
  let misses = 0;
  for (let k = from; k <= to; k++) {
    const step = await iterate(k, current);
    tried.push(step);
    current = step.val;
    if (step.val.reward > best) {
      best = step.val.reward;
      keep = tried.length;
      misses = 0;
    } else if (++misses >= patience) {
      break;
    }
  }
  const dropped = tried.slice(keep).map((step, i) => ({ iteration: from + keep + i, step }));
  return dropped.length > 0 ? { kept: tried.slice(0, keep), dropped } : { kept: tried.slice(0, keep) };
}

/**
 * The chosen variant continued past the search's iterations while its validation reward rises
 * (`tuning.extendTo`), with the words for the report; the faithful method keeps its configured K.
 */
async function extendChosen(
  ctx: PipelineContext,
  run: VariantRun,
  ids: { base: string; improver: string },
): Promise<{ run: VariantRun; words: string }> {
  const K = ctx.cfg.tuning.iterations;
  const to = ctx.cfg.tuning.extendTo;
  if (to <= K || run.spec.key === "faithful") return { run, words: "" };
  const stage = variantStage(ctx, run.spec);
  const every = earlyStopEvery(ctx, run.spec, stage);
  const patience = ctx.cfg.tuning.extendPatience ?? 1;
  const ext = await extendWhileRising(
    run.finalVal,
    K + 1,
    to,
    (k, current) => chainIteration(ctx, run.spec, ids, stage, every, k, current.checkpointId, current),
    patience,
  );
  const r = run.result;
  const result: VariantResult = {
    ...r,
    validation: [...r.validation, ...ext.kept.map((s) => s.val.reward)],
    validationCi: [...r.validationCi, ...ext.kept.map((s) => s.val.ci)],
    validationVendi: [...r.validationVendi, ...ext.kept.map((s) => s.val.vendi)],
    trainMetrics: [...r.trainMetrics, ...ext.kept.map((s) => s.metrics)],
    checkpoints: [...r.checkpoints, ...ext.kept.map((s) => s.checkpointId)],
  };
  const finalVal = ext.kept.at(-1)?.val ?? run.finalVal;
  const kept =
    ext.kept.length === 0
      ? "none kept"
      : `iteration${ext.kept.length === 1 ? "" : "s"} ${K + 1}${ext.kept.length > 1 ? `–${K + ext.kept.length}` : ""} kept (${ext.kept.map((s) => s.val.reward.toFixed(4)).join(", ")})`;
  const d = ext.dropped ?? [];
  const dropped =
    d.length === 0
      ? ""
      : d.length === 1 && patience === 1
        ? `; iteration ${d[0].iteration} (${d[0].step.val.reward.toFixed(4)}) did not rise and was dropped`
        : `; iteration${d.length === 1 ? "" : "s"} ${d[0].iteration}${d.length > 1 ? `–${d[d.length - 1].iteration}` : ""} (${d.map((x) => x.step.val.reward.toFixed(4)).join(", ")}) did not beat the best and ${d.length === 1 ? "was" : "were"} dropped`;
  const rule =
    patience === 1
      ? "while its validation reward rose"
      : `until ${patience} iterations in a row did not beat its best validation reward`;
  const words = `; then it went on from its last iterate ${rule}, up to ${to} iterations: ${kept}${dropped}`;
  ctx.progress(`search: ${run.spec.label}: ${words.slice(2)}`);
  return { run: { spec: run.spec, result, finalVal }, words };
}

/** Key of the chosen policy's samples improved once by the improver (what a user deploys). */
export const DEPLOYED_KEY = "tuned-fix";

/** The variant the search keeps, and the rule that picked it, in words for the report. */
export interface VariantChoice {
  /** Index into the variants given. */
  index: number;
  /** Which rule picked it. */
  rule: string;
}

/**
 * Picks a variant from validation figures only. The goal is a policy that keeps improving and keeps its
 * diversity, so the variants whose validation reward rose at every iteration and whose last validation Vendi
 * is at least `minVendiRatio` of the start's compete on their last validation reward; when none qualifies,
 * every variant does. Ties keep the earlier variant (the faithful method comes first).
 */
export function chooseVariant(
  variants: readonly Pick<VariantResult, "validation" | "validationVendi">[],
  startVendi: number,
  minVendiRatio: number,
): VariantChoice {
  if (variants.length === 0) throw new Error("chooseVariant: no variants to choose from");
  const last = (xs: readonly number[]) => xs[xs.length - 1];
  const qualifies = (v: Pick<VariantResult, "validation" | "validationVendi">) =>
    v.validation.length >= 2 &&
    v.validation.every((r, i) => i === 0 || r > v.validation[i - 1]) &&
    last(v.validationVendi) >= minVendiRatio * startVendi;
  const pool = variants.map((_, i) => i).filter((i) => qualifies(variants[i]));
  const from = pool.length > 0 ? pool : variants.map((_, i) => i);
  let index = from[0];
  for (const i of from) if (last(variants[i].validation) > last(variants[index].validation)) index = i;
  const iters = variants[index].validation.length - 1;
  const when = `after ${iters} iteration${iters === 1 ? "" : "s"}`;
  const rule =
    pool.length > 0
      ? `highest validation reward ${when} among the variants whose validation reward rose at every iteration with Vendi ≥ ${minVendiRatio}× the start's`
      : `highest validation reward ${when} (no variant rose at every iteration with Vendi ≥ ${minVendiRatio}× the start's)`;
  return { index, rule };
}

/**
 * The search for what makes the iterative method work: every single change from the faithful method,
 * then their combination, all measured on the validation prompts only; the best by final validation
 * reward is evaluated on the train and test sets as its own row.
 */
export async function runTuning(
  ctx: PipelineContext,
  faithful: FaithfulResults,
): Promise<
  NonNullable<PaperResults["tuning"]> & { model: ModelEval; variantModels: Record<string, ModelEval> }
> {
  const ids = { base: faithful.base.checkpointId, improver: faithful.improver.checkpointId };
  const startVal = await validate(ctx, BASE_KEY, faithful.base.checkpointId);
  const runs = await runVariants(ctx, ids, startVal, faithful);
  const choice = chooseVariant(
    runs.map((r) => r.result),
    startVal.vendi,
    ctx.cfg.tuning.minVendiRatio,
  );
  const searched = runs[choice.index];
  const searchedFinal = finalReward(searched);
  const extended = await extendChosen(ctx, searched, ids);
  runs[choice.index] = extended.run;
  const best = extended.run;
  const variantModels = await evaluateFinalIterates(ctx, runs, faithful);
  const reason =
    `${choice.rule} (${searchedFinal.toFixed(4)}; ` +
    `faithful ${finalReward(runs[0]).toFixed(4)}, base ${startVal.reward.toFixed(4)})${extended.words}`;
  const chosenKey = best.result.modelKey!;
  const chosen = variantModels[chosenKey] ?? faithful.models[chosenKey];
  // The "tuned" row is the chosen variant's evaluation under another label; its key stays that of the
  // evaluation, which names its stored samples.
  const model: ModelEval = { ...chosen, label: `Ours, tuned (${best.spec.label})` };
  variantModels[DEPLOYED_KEY] = await evaluatePolicyThenFix(
    ctx,
    DEPLOYED_KEY,
    "Ours, tuned, then the improver once",
    chosen,
    ids.improver,
  );
  return {
    variants: runs.map((r) => r.result),
    chosen: best.spec.key,
    reason,
    modelKey: "tuned",
    deployedKey: DEPLOYED_KEY,
    model,
    variantModels,
  };
}

/** A variant's last validation reward. */
function finalReward(r: VariantRun): number {
  return r.result.validation[r.result.validation.length - 1];
}

/** The faithful method (its first K iterates, measured on validation), then every variant, then their combination. */
async function runVariants(
  ctx: PipelineContext,
  ids: { base: string; improver: string },
  startVal: ValidationEval,
  faithful: FaithfulResults,
): Promise<VariantRun[]> {
  const { cfg } = ctx;
  const f = faithfulSpec(ctx);
  const K = cfg.tuning.iterations;
  const faithfulVals: ValidationEval[] = [];
  for (let k = 1; k <= Math.min(K, faithful.ours.checkpoints.length); k++) {
    faithfulVals.push(await validate(ctx, `ours/iter-${k}`, faithful.ours.checkpoints[k - 1]));
  }
  const runs: VariantRun[] = [
    {
      spec: f,
      result: toVariantResult(f, startVal, faithfulVals, faithful.ours.metrics.slice(0, K)),
      finalVal: faithfulVals[faithfulVals.length - 1],
    },
  ];
  for (const spec of variantSpecs(ctx)) {
    ctx.progress(`search: ${spec.label} (${spec.change})`);
    runs.push(await runVariant(ctx, spec, ids, startVal, faithful));
  }
  const combined = !cfg.tuning.combine
    ? undefined
    : combineHelpful(
        f,
        runs.slice(1).map((r) => ({ spec: r.spec, finalReward: finalReward(r) })),
        finalReward(runs[0]),
        cfg.tuning,
      );
  if (combined) {
    ctx.progress(`search: combined (${combined.change})`);
    runs.push(await runVariant(ctx, combined, ids, startVal, faithful));
  }
  return runs;
}

/**
 * Every variant's last iterate on train and test, for the report's "what made it work" table: measured
 * after the choice, which reads validation only. A checkpoint the faithful part already evaluated (the
 * faithful run's last iterate, or the base kept by early stopping) keeps that evaluation. Sets each
 * variant's `modelKey`; returns the new evaluations by key.
 */
async function evaluateFinalIterates(
  ctx: PipelineContext,
  runs: readonly VariantRun[],
  faithful: FaithfulResults,
): Promise<Record<string, ModelEval>> {
  const variantModels: Record<string, ModelEval> = {};
  for (const r of runs) {
    const earlier = Object.values(faithful.models).find((m) => m.checkpointId === r.finalVal.checkpointId);
    const key = earlier?.key ?? `tune/${r.spec.key}`;
    if (!earlier) {
      variantModels[key] = await evaluateModel(ctx, key, `search: ${r.spec.label}`, r.finalVal.checkpointId);
    }
    r.result.modelKey = key;
  }
  return variantModels;
}
