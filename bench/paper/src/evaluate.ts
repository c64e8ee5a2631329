import type { ImageBatch } from "@idpo/data";
import type { BenchMesh } from "./bench-mesh.js";
import type { SamplingConfig } from "./config.js";
import { deriveSeed, type PromptSet, type PromptSetName } from "./prompt-sets.js";
import { type ModelEval, type SetEval, summariseRewards } from "./results.js";
import type { StageRunner } from "./stage-runner.js";

/** The model key of the base model (every win-rate and Δ is against it). */
export const BASE_KEY = "base";
/** The model key of "the improvement model applied once to the base model's samples". */
export const FIX_KEY = "improver-fix";
/** Key of the one-shot fixer started from the noised base sample (SDEdit) instead of pure noise. */
export const FIX_SDEDIT_KEY = "improver-fix-sdedit";

/** What evaluations need. */
export interface EvalContext {
  mesh: BenchMesh;
  runner: StageRunner;
  /** The three prompt sets with their seeds. */
  sets: Record<PromptSetName, PromptSet>;
  sampling: SamplingConfig;
  /** Artifact namespace of this benchmark run (config and seed). */
  tag: string;
  /** Master seed. */
  seed: number;
}

/** Artifact of a model's samples on a prompt set. */
export function samplesArtifact(tag: string, key: string, set: PromptSetName): string {
  return `bench/${tag}/samples/${key}/${set}.samples`;
}

/** One prompt per image of a set, prompt-major (the order of every sample batch). */
export function expandPrompts(set: PromptSet): string[] {
  const out: string[] = [];
  for (const p of set.prompts) for (let j = 0; j < set.samplesPerPrompt; j++) out.push(p);
  return out;
}

/** A model's samples on a set (sampled once through the Generator, then read back from the artifact store). */
export function sampleSet(
  ctx: EvalContext,
  key: string,
  checkpointId: string,
  set: PromptSetName,
): Promise<ImageBatch> {
  const s = ctx.sets[set];
  return ctx.mesh.sample(
    checkpointId,
    s.prompts,
    s.samplesPerPrompt,
    s.seed,
    ctx.sampling,
    samplesArtifact(ctx.tag, key, set),
  );
}

async function scoreSet(
  ctx: EvalContext,
  images: ImageBatch,
  set: PromptSetName,
  reference: { images: ImageBatch; rewards: number[] } | undefined,
): Promise<SetEval> {
  const prompts = expandPrompts(ctx.sets[set]);
  const scored = await ctx.mesh.score(images, prompts, reference?.images);
  const summary = summariseRewards(scored.rewards, reference?.rewards);
  return { ...summary, vendi: scored.vendi, components: scored.components, rewards: scored.rewards };
}

async function baseReference(
  ctx: EvalContext,
  set: "train" | "test",
): Promise<{ images: ImageBatch; rewards: number[] }> {
  const base = ctx.runner.result<ModelEval>(`eval:${BASE_KEY}`);
  if (!base) throw new Error("the base model must be evaluated before any other model");
  const images = await sampleSet(ctx, BASE_KEY, base.checkpointId, set);
  return { images, rewards: base[set].rewards };
}

/**
 * What an evaluation depends on: the evaluated checkpoint's content, the prompt sets and their seeds, the
 * sampling settings, and (for a comparison with the base) the base's content.
 */
async function evalInputs(
  ctx: EvalContext,
  checkpointId: string,
  sets: readonly PromptSetName[],
  withBase: boolean,
  extra: Record<string, unknown> = {},
): Promise<unknown> {
  const base = withBase ? ctx.runner.result<ModelEval>(`eval:${BASE_KEY}`) : undefined;
  if (withBase && !base) throw new Error("the base model must be evaluated before any other model");
  return {
    checkpoint: await ctx.mesh.checkpointSha(checkpointId),
    base: base ? await ctx.mesh.checkpointSha(base.checkpointId) : undefined,
    sets: sets.map((s) => ctx.sets[s]),
    sampling: ctx.sampling,
    ...extra,
  };
}

/**
 * Evaluates a policy checkpoint on the train and test sets (a stage `eval:<key>`): samples with the sets'
 * seeds through the Generator, scores through the Scorer, win-rate against the base's samples of the same
 * prompts and seeds.
 */
export async function evaluateModel(
  ctx: EvalContext,
  key: string,
  label: string,
  checkpointId: string,
): Promise<ModelEval> {
  const inputs = await evalInputs(ctx, checkpointId, ["train", "test"], key !== BASE_KEY, { key, label });
  return ctx.runner.run(`eval:${key}`, inputs, async () => {
    const out = { key, label, checkpointId } as ModelEval;
    for (const set of ["train", "test"] as const) {
      const images = await sampleSet(ctx, key, checkpointId, set);
      out[set] = await scoreSet(
        ctx,
        images,
        set,
        key === BASE_KEY ? undefined : await baseReference(ctx, set),
      );
    }
    return out;
  });
}

/**
 * Improves `source`'s samples (given the set and the base's samples of it) of the train and test sets once with the improver (image i with seed + i, the
 * same seeds for every source) and scores them against the base's samples of the same prompts and seeds.
 * The improved images are stored under `artifact(set)`.
 */
async function improveAndScore(
  ctx: EvalContext,
  out: ModelEval,
  improverId: string,
  strength: number,
  source: (set: "train" | "test", base: ImageBatch) => Promise<ImageBatch>,
  artifact: (set: "train" | "test") => string,
): Promise<ModelEval> {
  for (const set of ["train", "test"] as const) {
    const ref = await baseReference(ctx, set);
    const images = await source(set, ref.images);
    let fixed = await ctx.mesh.loadImages(artifact(set), improverId, images.n);
    if (!fixed) {
      fixed = await ctx.mesh.improve(
        improverId,
        images,
        expandPrompts(ctx.sets[set]),
        deriveSeed(ctx.seed, `fix:${set}`),
        { ...ctx.sampling, strength },
      );
      await ctx.mesh.storeImages(artifact(set), fixed, improverId);
    }
    out[set] = await scoreSet(ctx, fixed, set, ref);
  }
  return out;
}

/**
 * Table 3: the improvement model as a one-shot fixer: each base sample of the train and test sets improved
 * once (s_T, s_I of the config), scored against the base sample it came from. `strength` below 1 starts
 * from the base sample noised to that fraction of the schedule (SDEdit) instead of from pure noise.
 */
export async function evaluateFix(ctx: EvalContext, improverId: string, strength = 1): Promise<ModelEval> {
  const key = strength === 1 ? FIX_KEY : FIX_SDEDIT_KEY;
  const inputs = await evalInputs(ctx, improverId, ["train", "test"], true, { key, strength });
  return ctx.runner.run(`eval:${key}`, inputs, async () => {
    const out = {
      key,
      label:
        strength === 1
          ? "Improver on base samples (one shot)"
          : `Improver on base samples, SDEdit ${strength} (one shot)`,
      checkpointId: improverId,
    } as ModelEval;
    return improveAndScore(
      ctx,
      out,
      improverId,
      strength,
      async (_set, base) => base,
      (set) => samplesArtifact(ctx.tag, key, set),
    );
  });
}

/**
 * What a user deploys: a fine-tuned policy's own samples (those of its evaluation) improved once by the
 * improver from noise, scored against the base's samples of the same prompts and seeds (a stage `eval:<key>`).
 */
export async function evaluatePolicyThenFix(
  ctx: EvalContext,
  key: string,
  label: string,
  policy: ModelEval,
  improverId: string,
): Promise<ModelEval> {
  const policySha = await ctx.mesh.checkpointSha(policy.checkpointId);
  const inputs = await evalInputs(ctx, improverId, ["train", "test"], true, { key, policy: policySha });
  return ctx.runner.run(`eval:${key}`, inputs, async () => {
    const out = { key, label, checkpointId: policy.checkpointId } as ModelEval;
    // Named by the policy's content too: another chosen policy must not find these images.
    return improveAndScore(
      ctx,
      out,
      improverId,
      1,
      (set) => sampleSet(ctx, policy.key, policy.checkpointId, set),
      (set) => samplesArtifact(ctx.tag, `${key}/${policySha.slice(0, 16)}`, set),
    );
  });
}

/** A validation measurement (train-split prompts disjoint from the evaluated ones). */
export interface ValidationEval {
  /** Checkpoint measured. */
  checkpointId: string;
  /** Mean reward. */
  reward: number;
  /** 95 % half-width. */
  ci: number;
  /** Vendi per prompt, averaged. */
  vendi: number;
  /** Per-image rewards. */
  rewards: number[];
}

/** Measures a checkpoint on the validation prompts (a stage `val:<key>`); the only signal any choice uses. */
export async function validate(ctx: EvalContext, key: string, checkpointId: string): Promise<ValidationEval> {
  const inputs = await evalInputs(ctx, checkpointId, ["validation"], false, { key });
  return ctx.runner.run(`val:${key}`, inputs, async () => {
    const images = await sampleSet(ctx, key, checkpointId, "validation");
    const scored = await ctx.mesh.score(images, expandPrompts(ctx.sets.validation));
    const s = summariseRewards(scored.rewards, undefined);
    return { checkpointId, reward: s.reward, ci: s.ci, vendi: scored.vendi, rewards: scored.rewards };
  });
}
