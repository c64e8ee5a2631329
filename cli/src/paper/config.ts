import { createHash } from "node:crypto";

/** Names of the built-in benchmark configurations. */
export const PAPER_CONFIG_NAMES = ["default", "quick", "scale"] as const;
/** One of PAPER_CONFIG_NAMES. */
export type PaperConfigName = (typeof PAPER_CONFIG_NAMES)[number];

/** Architecture presets of @idpo/diffusion the trainer accepts for a fresh base model. */
export const MODEL_PRESETS = ["tiny", "shapes16", "shapes32"] as const;
/** One of MODEL_PRESETS. */
export type ModelPreset = (typeof MODEL_PRESETS)[number];

/** Optimisation of one training job (a Trainer TrainingConfig subset). */
export interface TrainStage {
  /** Optimiser steps of the job. */
  steps: number;
  /** Examples per optimiser step (images for PRETRAIN/SFT, pairs for IMPROVER/DPO/SPIN). */
  batchSize: number;
  /** Peak AdamW learning rate. */
  learningRate: number;
  /** Linear warmup steps (≤ steps). */
  warmupSteps: number;
  /**
   * EMA decay of the weights (0 or absent: none); the job's checkpoints are then the averaged weights.
   * Used for the pretrained models (base, improver), where it removes much of the samples' residual noise.
   */
  emaDecay?: number;
}

/** Optimisation of a preference job (DPO or SPIN): a TrainStage plus the DPO temperature. */
export interface PreferenceStage extends TrainStage {
  /** Diffusion-DPO β (the paper: 2000 at SD scale; the shapes reference: 1000). */
  beta: number;
}

/** An iterated method (SPIN, ours): K iterations of a preference job. */
export interface IteratedStage extends PreferenceStage {
  /** Iterations K (the paper: 3). */
  iterations: number;
}

/** How images are sampled everywhere in the benchmark (evaluation, online pairs, the improver fixer). */
export interface SamplingConfig {
  /** DDIM denoising steps per image. */
  steps: number;
  /** Policy classifier-free guidance scale. */
  guidanceScale: number;
  /** Improver text guidance s_T (DESIGN.md §1: 3.5). */
  textGuidance: number;
  /** Improver image guidance s_I (DESIGN.md §1: 3.0). */
  imageGuidance: number;
}

/** Which prompts and seeds every model is evaluated on (identical for every model). */
export interface EvalConfig {
  /** Training prompts evaluated (an evenly spaced subset of the shapes world's train split). */
  trainPrompts: number;
  /** Held-out test prompts evaluated (an evenly spaced subset of the test split). */
  testPrompts: number;
  /** Samples per evaluated prompt (the Vendi score is over these; ≥ 16 as the issue asks). */
  samplesPerPrompt: number;
  /** Validation prompts: train-split prompts disjoint from the evaluated ones, for every choice made. */
  validationPrompts: number;
  /** Samples per validation prompt. */
  validationSamplesPerPrompt: number;
}

/** The "what makes the iterative method work" search (run after the faithful methods). */
export interface TuningConfig {
  /** Whether to run the search at all. */
  enabled: boolean;
  /** Iterations each variant runs (each iteration is evaluated on the validation prompts). */
  iterations: number;
  /** Online pairs per iteration of the "more online pairs" variant. */
  morePairs: number;
  /** Learning rate of the "lower LR" variant. */
  lowLearningRate: number;
  /** β values tried by the "β" variants. */
  betas: number[];
  /** SFT steps on the improved winners after each DPO iteration ("SFT term" variant). */
  sftSteps: number;
  /** Learning rate of that SFT job. */
  sftLearningRate: number;
  /** Intermediate checkpoints per iteration for early stopping (evaluated on validation; best kept). */
  earlyStopCheckpoints: number;
  /**
   * Improver strength of the "SDEdit winners" variant: the improver starts from the loser noised to this
   * fraction of the schedule instead of from pure noise (the faithful method's 1).
   */
  improveStrength: number;
}

/** Everything `idpo bench paper` does, for one configuration. */
export interface PaperConfig {
  /** Name of this configuration (labels the report and the state under the data dir). */
  name: PaperConfigName;
  /** Image side S (the shapes world at S = 16, like the reference). */
  imageSize: number;
  /** Architecture preset of every model. */
  modelPreset: ModelPreset;
  /** Offline preference pairs in the shapes:// dataset (train prompts only). */
  offlinePairs: number;
  /** Base model: PRETRAIN on all offline images with their prompts (the SD 1.5 analogue). */
  base: TrainStage;
  /** Improvement model: IMPROVER three-task mixture, initialised from the base. */
  improver: TrainStage & {
    /** Probability of the conditional-improvement task. */
    improveTaskProbability: number;
    /** Probability of the reconstruction task (the rest is unconditional). */
    reconstructTaskProbability: number;
  };
  /** SFT baseline on the offline winners, from the base. */
  sft: TrainStage;
  /** Offline Diffusion-DPO baseline on the offline pairs, from the base, reference = base. */
  dpo: PreferenceStage;
  /** SPIN-Diffusion: K iterations, previous iterate = reference and loser source, dataset winners. */
  spin: IteratedStage;
  /** The paper's method: K iterations of online pairs (policy losers, improver winners) + DPO, reference = base. */
  ours: IteratedStage & {
    /** Online pairs per iteration (the faithful rows). */
    pairsPerIteration: number;
    /** Pairs per work-queue shard. */
    shardSize: number;
    /** Table 2: online pairs per iteration of the three "ours from base" runs (one equals pairsPerIteration). */
    pairSizes: [number, number, number];
  };
  /** Sampling settings shared by every stage. */
  sampling: SamplingConfig;
  /** Evaluation prompts and samples. */
  eval: EvalConfig;
  /** The search for what makes the iterative method work. */
  tuning: TuningConfig;
}

const BASE_SAMPLING: SamplingConfig = { steps: 10, guidanceScale: 3, textGuidance: 3.5, imageGuidance: 3 };

/**
 * The default configuration, sized from throughput measured through the services on the 2-core
 * development machine (wasm backend, `tiny` preset, 16×16, one thread per process, two seeds side by
 * side): the base model's 4000 steps of 64 images take ≈ 27 minutes (≈ 157 images/s), the improver's
 * 1500 steps ≈ 5 minutes, everything after them ≈ 30 minutes; about an hour per seed in all.
 * Its base model reaches an oracle reward of ≈ 0.59 (1000 steps without EMA: ≈ 0.50): a clearly
 * sub-optimal base, the SD 1.5 analogue, with room for every method to improve it.
 */
const DEFAULT_CONFIG: PaperConfig = {
  name: "default",
  imageSize: 16,
  modelPreset: "tiny",
  offlinePairs: 2000,
  base: { steps: 4000, batchSize: 64, learningRate: 2e-3, warmupSteps: 100, emaDecay: 0.999 },
  improver: {
    steps: 1500,
    batchSize: 32,
    learningRate: 1e-3,
    warmupSteps: 50,
    emaDecay: 0.999,
    improveTaskProbability: 0.8,
    reconstructTaskProbability: 0.1,
  },
  sft: { steps: 100, batchSize: 64, learningRate: 2e-4, warmupSteps: 10 },
  dpo: { steps: 100, batchSize: 32, learningRate: 2e-5, warmupSteps: 5, beta: 1000 },
  spin: { steps: 40, batchSize: 32, learningRate: 2e-5, warmupSteps: 4, beta: 1000, iterations: 3 },
  ours: {
    steps: 40,
    batchSize: 32,
    learningRate: 2e-5,
    warmupSteps: 4,
    beta: 1000,
    iterations: 3,
    pairsPerIteration: 256,
    shardSize: 64,
    pairSizes: [64, 256, 1024],
  },
  sampling: { ...BASE_SAMPLING },
  eval: {
    trainPrompts: 12,
    testPrompts: 12,
    samplesPerPrompt: 16,
    validationPrompts: 12,
    validationSamplesPerPrompt: 8,
  },
  tuning: {
    enabled: true,
    iterations: 2,
    morePairs: 1024,
    lowLearningRate: 5e-6,
    betas: [250],
    sftSteps: 40,
    sftLearningRate: 2e-4,
    earlyStopCheckpoints: 4,
    improveStrength: 0.6,
  },
};

/** `--quick`: the same pipeline, small everywhere (a smoke test of the whole benchmark, ≤ 15 minutes). */
const QUICK_CONFIG: PaperConfig = {
  ...DEFAULT_CONFIG,
  name: "quick",
  offlinePairs: 500,
  base: { steps: 200, batchSize: 32, learningRate: 2e-3, warmupSteps: 20 },
  improver: {
    steps: 100,
    batchSize: 16,
    learningRate: 1e-3,
    warmupSteps: 10,
    improveTaskProbability: 0.8,
    reconstructTaskProbability: 0.1,
  },
  sft: { steps: 20, batchSize: 32, learningRate: 2e-4, warmupSteps: 2 },
  dpo: { steps: 20, batchSize: 16, learningRate: 2e-5, warmupSteps: 2, beta: 1000 },
  spin: { steps: 10, batchSize: 16, learningRate: 2e-5, warmupSteps: 1, beta: 1000, iterations: 3 },
  ours: {
    ...DEFAULT_CONFIG.ours,
    steps: 10,
    batchSize: 16,
    warmupSteps: 1,
    pairsPerIteration: 32,
    shardSize: 16,
    pairSizes: [16, 32, 64],
  },
  sampling: { ...BASE_SAMPLING, steps: 8 },
  eval: {
    trainPrompts: 4,
    testPrompts: 4,
    samplesPerPrompt: 16,
    validationPrompts: 4,
    validationSamplesPerPrompt: 4,
  },
  tuning: {
    enabled: true,
    iterations: 1,
    morePairs: 64,
    lowLearningRate: 5e-6,
    betas: [250],
    sftSteps: 5,
    sftLearningRate: 2e-4,
    earlyStopCheckpoints: 2,
    improveStrength: 0.6,
  },
};

/** `--scale`: the reference run's model (shapes16, ~0.7M weights) and data sizes; hours on 2 cores. */
const SCALE_CONFIG: PaperConfig = {
  ...DEFAULT_CONFIG,
  name: "scale",
  modelPreset: "shapes16",
  offlinePairs: 3000,
  base: { steps: 8000, batchSize: 64, learningRate: 1e-3, warmupSteps: 100, emaDecay: 0.999 },
  improver: { ...DEFAULT_CONFIG.improver, steps: 2000, batchSize: 32, warmupSteps: 50 },
  sft: { steps: 300, batchSize: 64, learningRate: 1e-4, warmupSteps: 20 },
  dpo: { steps: 300, batchSize: 32, learningRate: 2e-5, warmupSteps: 20, beta: 1000 },
  spin: { steps: 200, batchSize: 32, learningRate: 2e-5, warmupSteps: 10, beta: 1000, iterations: 3 },
  ours: {
    ...DEFAULT_CONFIG.ours,
    steps: 200,
    pairsPerIteration: 512,
    shardSize: 64,
    pairSizes: [128, 512, 2048],
  },
  sampling: { ...BASE_SAMPLING, steps: 20 },
  eval: {
    trainPrompts: 24,
    testPrompts: 24,
    samplesPerPrompt: 16,
    validationPrompts: 12,
    validationSamplesPerPrompt: 8,
  },
  tuning: { ...DEFAULT_CONFIG.tuning, morePairs: 4096 },
};

const CONFIGS: Record<PaperConfigName, PaperConfig> = {
  default: DEFAULT_CONFIG,
  quick: QUICK_CONFIG,
  scale: SCALE_CONFIG,
};

/** A deep copy of a built-in configuration. */
export function paperConfig(name: PaperConfigName): PaperConfig {
  const cfg = CONFIGS[name];
  if (!cfg)
    throw new Error(
      `unknown benchmark config ${JSON.stringify(name)} (known: ${PAPER_CONFIG_NAMES.join(", ")})`,
    );
  return structuredClone(cfg);
}

function checkInt(v: number, lo: number, hi: number, field: string, errors: string[]): void {
  if (!Number.isInteger(v) || v < lo || v > hi)
    errors.push(`${field} = ${v}: expected an integer in [${lo}, ${hi}]`);
}

function checkNum(v: number, lo: number, hi: number, field: string, errors: string[], lowOpen = false): void {
  if (!Number.isFinite(v) || v > hi || (lowOpen ? v <= lo : v < lo)) {
    errors.push(`${field} = ${v}: expected a number in ${lowOpen ? "(" : "["}${lo}, ${hi}]`);
  }
}

function checkStage(s: TrainStage, field: string, errors: string[]): void {
  checkInt(s.steps, 1, 1_000_000, `${field}.steps`, errors);
  checkInt(s.batchSize, 1, 4096, `${field}.batchSize`, errors);
  checkNum(s.learningRate, 0, 1, `${field}.learningRate`, errors, true);
  checkInt(s.warmupSteps, 0, s.steps, `${field}.warmupSteps`, errors);
  if (s.emaDecay !== undefined && !(s.emaDecay >= 0 && s.emaDecay < 1))
    errors.push(`${field}.emaDecay = ${s.emaDecay}: expected a number in [0, 1)`);
}

function checkPreference(s: PreferenceStage, field: string, errors: string[]): void {
  checkStage(s, field, errors);
  checkNum(s.beta, 0, 1e6, `${field}.beta`, errors, true);
}

/** Number of prompts in the shapes world's train and test splits (DESIGN.md §7: 84 and 21 combinations × 3 sizes). */
export const SPLIT_SIZES = { train: 252, test: 63 } as const;

/**
 * Checks a configuration; throws one error listing every problem, each naming its field.
 * The limits are those of the services' contracts plus the benchmark's own needs (e.g. evaluation and
 * validation prompts must fit disjointly in the train split).
 */
export function validatePaperConfig(cfg: PaperConfig): void {
  const errors: string[] = [];
  if (!(PAPER_CONFIG_NAMES as readonly string[]).includes(cfg.name))
    errors.push(`name = ${JSON.stringify(cfg.name)}: unknown`);
  if (cfg.imageSize !== 16 && cfg.imageSize !== 32)
    errors.push(`imageSize = ${cfg.imageSize}: expected 16 or 32`);
  if (!(MODEL_PRESETS as readonly string[]).includes(cfg.modelPreset)) {
    errors.push(
      `modelPreset = ${JSON.stringify(cfg.modelPreset)}: expected one of ${MODEL_PRESETS.join(", ")}`,
    );
  } else if ((cfg.modelPreset === "shapes32") !== (cfg.imageSize === 32)) {
    errors.push(
      `modelPreset = ${cfg.modelPreset} works on ${cfg.modelPreset === "shapes32" ? 32 : 16}px images, imageSize is ${cfg.imageSize}`,
    );
  }
  checkInt(cfg.offlinePairs, 16, 10_000_000, "offlinePairs", errors);
  checkStage(cfg.base, "base", errors);
  checkStage(cfg.improver, "improver", errors);
  checkNum(cfg.improver.improveTaskProbability, 0, 1, "improver.improveTaskProbability", errors);
  checkNum(cfg.improver.reconstructTaskProbability, 0, 1, "improver.reconstructTaskProbability", errors);
  if (cfg.improver.improveTaskProbability + cfg.improver.reconstructTaskProbability > 1 + 1e-12) {
    errors.push("improver: improveTaskProbability + reconstructTaskProbability exceeds 1");
  }
  checkStage(cfg.sft, "sft", errors);
  checkPreference(cfg.dpo, "dpo", errors);
  checkPreference(cfg.spin, "spin", errors);
  checkInt(cfg.spin.iterations, 1, 100, "spin.iterations", errors);
  checkPreference(cfg.ours, "ours", errors);
  checkInt(cfg.ours.iterations, 1, 100, "ours.iterations", errors);
  checkInt(cfg.ours.pairsPerIteration, 1, 1_000_000, "ours.pairsPerIteration", errors);
  checkInt(cfg.ours.shardSize, 1, 4096, "ours.shardSize", errors);
  if (!Array.isArray(cfg.ours.pairSizes) || cfg.ours.pairSizes.length !== 3) {
    errors.push("ours.pairSizes: expected exactly three sizes");
  } else {
    for (let i = 0; i < 3; i++) checkInt(cfg.ours.pairSizes[i], 1, 1_000_000, `ours.pairSizes[${i}]`, errors);
    const sorted = [...cfg.ours.pairSizes].sort((a, b) => a - b);
    if (new Set(sorted).size !== 3 || sorted.some((v, i) => v !== cfg.ours.pairSizes[i])) {
      errors.push(`ours.pairSizes = [${cfg.ours.pairSizes.join(", ")}]: expected three increasing sizes`);
    }
    if (!cfg.ours.pairSizes.includes(cfg.ours.pairsPerIteration)) {
      errors.push(
        `ours.pairSizes = [${cfg.ours.pairSizes.join(", ")}] must include ours.pairsPerIteration (${cfg.ours.pairsPerIteration}): that run is shared with Table 1`,
      );
    }
  }
  checkInt(cfg.sampling.steps, 1, 1000, "sampling.steps", errors);
  checkNum(cfg.sampling.guidanceScale, 0, 30, "sampling.guidanceScale", errors);
  checkNum(cfg.sampling.textGuidance, 0, 30, "sampling.textGuidance", errors);
  checkNum(cfg.sampling.imageGuidance, 0, 30, "sampling.imageGuidance", errors);
  const e = cfg.eval;
  checkInt(e.trainPrompts, 1, SPLIT_SIZES.train, "eval.trainPrompts", errors);
  checkInt(e.testPrompts, 1, SPLIT_SIZES.test, "eval.testPrompts", errors);
  checkInt(e.samplesPerPrompt, 16, 256, "eval.samplesPerPrompt", errors);
  checkInt(e.validationPrompts, 1, SPLIT_SIZES.train, "eval.validationPrompts", errors);
  checkInt(e.validationSamplesPerPrompt, 2, 256, "eval.validationSamplesPerPrompt", errors);
  if (e.trainPrompts + e.validationPrompts > SPLIT_SIZES.train) {
    errors.push(
      `eval.trainPrompts + eval.validationPrompts = ${e.trainPrompts + e.validationPrompts}: must fit disjointly in the ${SPLIT_SIZES.train} train prompts`,
    );
  }
  if ((e.trainPrompts + e.testPrompts) * e.samplesPerPrompt > 4096) {
    errors.push(
      "eval: (trainPrompts + testPrompts) × samplesPerPrompt exceeds the Scorer's 4096 images per call",
    );
  }
  const t = cfg.tuning;
  if (typeof t.enabled !== "boolean") errors.push("tuning.enabled: expected a boolean");
  checkInt(t.iterations, 1, 100, "tuning.iterations", errors);
  checkInt(t.morePairs, 1, 1_000_000, "tuning.morePairs", errors);
  checkNum(t.lowLearningRate, 0, 1, "tuning.lowLearningRate", errors, true);
  if (!Array.isArray(t.betas)) errors.push("tuning.betas: expected an array");
  else
    for (let i = 0; i < t.betas.length; i++) checkNum(t.betas[i], 0, 1e6, `tuning.betas[${i}]`, errors, true);
  checkInt(t.sftSteps, 1, 1_000_000, "tuning.sftSteps", errors);
  checkNum(t.sftLearningRate, 0, 1, "tuning.sftLearningRate", errors, true);
  checkInt(t.earlyStopCheckpoints, 1, 100, "tuning.earlyStopCheckpoints", errors);
  if (!(t.improveStrength > 0 && t.improveStrength <= 1))
    errors.push(`tuning.improveStrength = ${t.improveStrength}: expected a number in (0, 1]`);
  if (t.earlyStopCheckpoints > cfg.ours.steps) {
    errors.push(
      `tuning.earlyStopCheckpoints = ${t.earlyStopCheckpoints}: more than ours.steps (${cfg.ours.steps})`,
    );
  }
  if (errors.length > 0) throw new Error(`invalid benchmark config "${cfg.name}":\n  ${errors.join("\n  ")}`);
}

/** Stable JSON (sorted keys) of a value, so equal configs hash equally. */
export function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(",")}]`;
  if (v !== null && typeof v === "object") {
    const keys = Object.keys(v as Record<string, unknown>).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${stableJson((v as Record<string, unknown>)[k])}`).join(",")}}`;
  }
  return JSON.stringify(v);
}

/** A short fingerprint of a configuration (a state file is only resumed by the same config). */
export function configHash(cfg: PaperConfig): string {
  return createHash("sha256").update(stableJson(cfg)).digest("hex").slice(0, 16);
}
