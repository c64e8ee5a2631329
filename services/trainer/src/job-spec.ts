import { clone, create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { checkpointArtifact } from "@idpo/mesh";
import { JobKind, type JobSpec, JobSpecSchema, TrainingConfigSchema } from "@idpo/proto";
import { type DataUri, parseDataUri } from "./data-uri.js";

/** Architecture presets a fresh PRETRAIN may name (those of @idpo/diffusion). */
export const MODEL_PRESETS = ["tiny", "shapes16", "shapes32"] as const;
/** A preset name. */
export type ModelPresetName = (typeof MODEL_PRESETS)[number];

/** The documented defaults of TrainingConfig and JobSpec (trainer_service.proto), in one place. */
export const JOB_DEFAULTS = {
  batchSize: 16,
  /** Peak learning rate of PRETRAIN / IMPROVER / SFT. */
  learningRate: 1e-3,
  /** Peak learning rate of DPO / SPIN. */
  preferenceLearningRate: 2e-5,
  maxGradNorm: 1.0,
  gradientAccumulation: 1,
  beta: 2000,
  promptDropout: 0.1,
  improveTaskProbability: 0.8,
  reconstructTaskProbability: 0.1,
  modelPreset: "shapes16" as ModelPresetName,
} as const;

/** Limits of the contract. */
export const JOB_LIMITS = { maxSteps: 1_000_000, maxBatchSize: 4096, maxData: 1024, maxBeta: 1e6 } as const;

const JOB_ID = /^[a-z0-9._/-]{1,128}$/;
const RUN_ID = /^[A-Za-z0-9_=:@-]{1,128}$/;

/** Optimisation settings with every default applied. */
export interface ResolvedTraining {
  /** Optimiser steps. */
  steps: number;
  /** Examples per optimiser step (pairs for DPO/SPIN/IMPROVER, images for PRETRAIN/SFT). */
  batchSize: number;
  /** Peak AdamW learning rate. */
  learningRate: number;
  /** Linear warmup steps. */
  warmupSteps: number;
  /** AdamW decoupled weight decay. */
  weightDecay: number;
  /** Global gradient-norm clip (0 = off). */
  maxGradNorm: number;
  /** Micro-batches per step (each of batchSize / gradientAccumulation examples). */
  gradientAccumulation: number;
  /** EMA decay (0 = no EMA). */
  emaDecay: number;
  /** DPO/SPIN β. */
  beta: number;
  /** PRETRAIN/SFT prompt dropout. */
  promptDropout: number;
  /** IMPROVER: probability of the improvement task. */
  improveTaskProbability: number;
  /** IMPROVER: probability of the reconstruction task (the rest is unconditional). */
  reconstructTaskProbability: number;
  /** Seed of initialisation, data order, timesteps and noise. */
  seed: number;
  /** Checkpoint period in steps (0 = only at the end). */
  checkpointEvery: number;
}

/** A job's definition with defaults applied and data URIs parsed. */
export interface ResolvedJob {
  jobId: string;
  /** "" for an ad-hoc job. */
  runId: string;
  kind: JobKind;
  data: DataUri[];
  /** "" only for a fresh PRETRAIN. */
  initCheckpointId: string;
  /** DPO's reference; SPIN's reference and loser source (defaults to the init checkpoint); "" otherwise. */
  referenceCheckpointId: string;
  modelPreset: ModelPresetName;
  /** Id of the final checkpoint; intermediate ones are `<id>@step-<N>`. */
  outputCheckpointId: string;
  iteration: number;
  training: ResolvedTraining;
  /** SPIN loser sampling settings given by the spec (the trainer's defaults fill the rest). */
  spinSampler: { steps?: number; guidanceScale?: number };
}

function invalid(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}

function inRange(name: string, v: number, lo: number, hi: number, loOpen = false, hiOpen = false): void {
  const okLo = loOpen ? v > lo : v >= lo;
  const okHi = hiOpen ? v < hi : v <= hi;
  if (!Number.isFinite(v) || !okLo || !okHi) {
    throw invalid(`${name}: ${v} is outside ${loOpen ? "(" : "["}${lo}, ${hi}${hiOpen ? ")" : "]"}`);
  }
}

/** True for the preference-optimisation kinds (pairs per example, DPO learning-rate default). */
export function isPreferenceKind(kind: JobKind): boolean {
  return kind === JobKind.DPO || kind === JobKind.SPIN;
}

/** The id of the intermediate checkpoint of `outputId` at `step`. */
export function intermediateCheckpointId(outputId: string, step: number): string {
  return `${outputId}@step-${step}`;
}

/**
 * Validates a submitted spec (everything that needs no I/O) and fills in every documented default.
 * Returns the filled spec (what the Job stores and returns) and its typed form. Throws INVALID_ARGUMENT
 * with a message that names the field, e.g. "spec.training.steps: 0 is outside [1, 1000000]".
 */
export function resolveSpec(
  input: JobSpec,
  generatedJobId: () => string,
): { spec: JobSpec; job: ResolvedJob } {
  const spec = clone(JobSpecSchema, input);
  if (spec.jobId === "") spec.jobId = generatedJobId();
  if (!JOB_ID.test(spec.jobId) || spec.jobId.includes("..")) {
    throw invalid(`spec.job_id: ${JSON.stringify(spec.jobId)} must match [a-z0-9._/-]{1,128} without ".."`);
  }
  if (spec.runId !== "" && !RUN_ID.test(spec.runId)) {
    throw invalid(`spec.run_id: ${JSON.stringify(spec.runId)} must match [A-Za-z0-9_=:@-]{1,128}`);
  }
  if (!(spec.kind in JobKind) || spec.kind === JobKind.UNSPECIFIED) {
    throw invalid("spec.kind: required (PRETRAIN, IMPROVER, SFT, DPO or SPIN)");
  }
  const kind = spec.kind;
  if (spec.data.length === 0) throw invalid("spec.data: at least one data URI is required");
  if (spec.data.length > JOB_LIMITS.maxData) {
    throw invalid(`spec.data: ${spec.data.length} URIs is more than the limit of ${JOB_LIMITS.maxData}`);
  }
  const data: DataUri[] = [];
  for (let i = 0; i < spec.data.length; i++) {
    try {
      data.push(parseDataUri(spec.data[i], `spec.data[${i}]`));
    } catch (e) {
      throw invalid((e as Error).message);
    }
  }
  if (spec.modelPreset === "") spec.modelPreset = JOB_DEFAULTS.modelPreset;
  if (!(MODEL_PRESETS as readonly string[]).includes(spec.modelPreset)) {
    throw invalid(
      `spec.model_preset: unknown preset ${JSON.stringify(spec.modelPreset)} (known: ${MODEL_PRESETS.join(", ")})`,
    );
  }
  for (const [field, id] of [
    ["spec.init_checkpoint_id", spec.initCheckpointId],
    ["spec.reference_checkpoint_id", spec.referenceCheckpointId],
  ] as const) {
    if (id === "") continue;
    try {
      checkpointArtifact(id);
    } catch (e) {
      throw invalid(`${field}: ${(e as Error).message}`);
    }
  }
  if (kind !== JobKind.PRETRAIN && spec.initCheckpointId === "") {
    throw invalid(
      `spec.init_checkpoint_id: required for ${JobKind[kind]} (only PRETRAIN starts from a fresh initialisation)`,
    );
  }
  if (kind === JobKind.DPO && spec.referenceCheckpointId === "") {
    throw invalid("spec.reference_checkpoint_id: required for DPO (the frozen reference)");
  }
  if (kind === JobKind.SPIN && spec.referenceCheckpointId === "")
    spec.referenceCheckpointId = spec.initCheckpointId;
  if (kind !== JobKind.DPO && kind !== JobKind.SPIN && spec.referenceCheckpointId !== "") {
    throw invalid(`spec.reference_checkpoint_id: only DPO and SPIN use a reference, not ${JobKind[kind]}`);
  }
  if (spec.outputCheckpointId === "") spec.outputCheckpointId = `jobs/${spec.jobId}`;
  const t = spec.training ? clone(TrainingConfigSchema, spec.training) : create(TrainingConfigSchema);
  spec.training = t;
  if (!Number.isInteger(t.steps) || t.steps < 1 || t.steps > JOB_LIMITS.maxSteps) {
    throw invalid(`spec.training.steps: ${t.steps} is outside [1, ${JOB_LIMITS.maxSteps}] (required)`);
  }
  try {
    const finalId = spec.outputCheckpointId;
    checkpointArtifact(finalId);
    checkpointArtifact(intermediateCheckpointId(finalId, t.steps));
  } catch (e) {
    throw invalid(`spec.output_checkpoint_id: ${(e as Error).message}`);
  }
  if (spec.outputCheckpointId.includes("@")) {
    throw invalid(
      `spec.output_checkpoint_id: ${JSON.stringify(spec.outputCheckpointId)} must not contain "@" (kept for "@step-N")`,
    );
  }
  if (t.batchSize === 0) t.batchSize = JOB_DEFAULTS.batchSize;
  inRange("spec.training.batch_size", t.batchSize, 1, JOB_LIMITS.maxBatchSize);
  inRange("spec.sampling_steps", spec.samplingSteps, 0, 1000);
  if (spec.guidanceScale !== undefined) inRange("spec.guidance_scale", spec.guidanceScale, 0, 30);
  t.learningRate ??= isPreferenceKind(kind) ? JOB_DEFAULTS.preferenceLearningRate : JOB_DEFAULTS.learningRate;
  inRange("spec.training.learning_rate", t.learningRate, 0, 1, true);
  inRange("spec.training.warmup_steps", t.warmupSteps, 0, JOB_LIMITS.maxSteps);
  inRange("spec.training.weight_decay", t.weightDecay, 0, 1);
  t.maxGradNorm ??= JOB_DEFAULTS.maxGradNorm;
  inRange("spec.training.max_grad_norm", t.maxGradNorm, 0, Number.MAX_VALUE);
  if (t.gradientAccumulation === 0) t.gradientAccumulation = JOB_DEFAULTS.gradientAccumulation;
  if (t.batchSize % t.gradientAccumulation !== 0) {
    throw invalid(
      `spec.training.gradient_accumulation: ${t.gradientAccumulation} does not divide spec.training.batch_size ${t.batchSize}`,
    );
  }
  inRange("spec.training.ema_decay", t.emaDecay, 0, 1, false, true);
  t.beta ??= JOB_DEFAULTS.beta;
  inRange("spec.training.beta", t.beta, 0, JOB_LIMITS.maxBeta, true);
  t.promptDropout ??= JOB_DEFAULTS.promptDropout;
  inRange("spec.training.prompt_dropout", t.promptDropout, 0, 1);
  t.improveTaskProbability ??= JOB_DEFAULTS.improveTaskProbability;
  inRange("spec.training.improve_task_probability", t.improveTaskProbability, 0, 1);
  t.reconstructTaskProbability ??= JOB_DEFAULTS.reconstructTaskProbability;
  inRange("spec.training.reconstruct_task_probability", t.reconstructTaskProbability, 0, 1);
  if (t.improveTaskProbability + t.reconstructTaskProbability > 1 + 1e-6) {
    throw invalid(
      `spec.training.reconstruct_task_probability: improve (${t.improveTaskProbability}) + reconstruct ` +
        `(${t.reconstructTaskProbability}) must not exceed 1`,
    );
  }
  if (t.seed > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw invalid(`spec.training.seed: ${t.seed} is larger than ${Number.MAX_SAFE_INTEGER}`);
  }
  for (const [field, id] of [
    ["spec.init_checkpoint_id", spec.initCheckpointId],
    ["spec.reference_checkpoint_id", spec.referenceCheckpointId],
  ] as const) {
    if (id === spec.outputCheckpointId) {
      throw invalid(
        `spec.output_checkpoint_id: ${JSON.stringify(id)} is also ${field}; a job must not overwrite its inputs`,
      );
    }
  }
  // The proto's floats are float32: round here so that a job resumed from its stored spec trains with
  // exactly the values the first run used.
  const f = Math.fround;
  const training: ResolvedTraining = {
    steps: t.steps,
    batchSize: t.batchSize,
    learningRate: f(t.learningRate),
    warmupSteps: t.warmupSteps,
    weightDecay: f(t.weightDecay),
    maxGradNorm: f(t.maxGradNorm),
    gradientAccumulation: t.gradientAccumulation,
    emaDecay: f(t.emaDecay),
    beta: f(t.beta),
    promptDropout: f(t.promptDropout),
    improveTaskProbability: f(t.improveTaskProbability),
    reconstructTaskProbability: f(t.reconstructTaskProbability),
    seed: Number(t.seed),
    checkpointEvery: t.checkpointEvery,
  };
  return {
    spec,
    job: {
      jobId: spec.jobId,
      runId: spec.runId,
      kind,
      data,
      initCheckpointId: spec.initCheckpointId,
      referenceCheckpointId: spec.referenceCheckpointId,
      modelPreset: spec.modelPreset as ModelPresetName,
      outputCheckpointId: spec.outputCheckpointId,
      iteration: spec.iteration,
      training,
      spinSampler: {
        ...(spec.samplingSteps > 0 ? { steps: spec.samplingSteps } : {}),
        ...(spec.guidanceScale !== undefined ? { guidanceScale: f(spec.guidanceScale) } : {}),
      },
    },
  };
}
