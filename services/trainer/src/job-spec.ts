import { clone } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { LrScheduleConfig } from "@idpo/diffusion";
import {
  checkJobKind,
  checkpointArtifact,
  checkRange,
  type DataUri,
  isPreferenceKind,
  type ModelPresetName,
  parseDataUri,
  resolveModelPreset,
  resolveTrainingConfig,
} from "@idpo/mesh";
import { JobKind, type JobSpec, JobSpecSchema, LrSchedule, type TrainingConfig } from "@idpo/proto";

/** Limits of a JobSpec beyond its TrainingConfig (whose limits are TRAINING_LIMITS). */
export const JOB_LIMITS = { maxData: 1024 } as const;

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
  /** The learning rate at every step: warmup, then constant, cosine or linear decay over `steps`. */
  schedule: LrScheduleConfig;
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
  /** DPO/SPIN: weight of RPO's winner ε-MSE term (0 = off). */
  sftWeight: number;
  /** DPO/SPIN: DPO-Positive's λ (0 = off). */
  dpoPositiveLambda: number;
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

/** The id of the intermediate checkpoint of `outputId` at `step`. */
export function intermediateCheckpointId(outputId: string, step: number): string {
  return `${outputId}@step-${step}`;
}

function checkIds(spec: JobSpec): void {
  if (!JOB_ID.test(spec.jobId) || spec.jobId.includes("..")) {
    throw invalid(`spec.job_id: ${JSON.stringify(spec.jobId)} must match [a-z0-9._/-]{1,128} without ".."`);
  }
  if (spec.runId !== "" && !RUN_ID.test(spec.runId)) {
    throw invalid(`spec.run_id: ${JSON.stringify(spec.runId)} must match [A-Za-z0-9_=:@-]{1,128}`);
  }
}

function resolveData(uris: readonly string[]): DataUri[] {
  if (uris.length === 0) throw invalid("spec.data: at least one data URI is required");
  if (uris.length > JOB_LIMITS.maxData) {
    throw invalid(`spec.data: ${uris.length} URIs is more than the limit of ${JOB_LIMITS.maxData}`);
  }
  return uris.map((uri, i) => parseDataUri(uri, `spec.data[${i}]`));
}

function checkCheckpointId(field: string, id: string): void {
  try {
    checkpointArtifact(id);
  } catch (e) {
    throw invalid(`${field}: ${(e as Error).message}`);
  }
}

/** Checks the input checkpoints against the kind and fills SPIN's default reference. */
function resolveInputs(spec: JobSpec, kind: JobKind): void {
  if (spec.initCheckpointId !== "") checkCheckpointId("spec.init_checkpoint_id", spec.initCheckpointId);
  if (spec.referenceCheckpointId !== "")
    checkCheckpointId("spec.reference_checkpoint_id", spec.referenceCheckpointId);
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
  if (!isPreferenceKind(kind) && spec.referenceCheckpointId !== "") {
    throw invalid(`spec.reference_checkpoint_id: only DPO and SPIN use a reference, not ${JobKind[kind]}`);
  }
}

/** Fills and checks the output checkpoint id (after the steps are known: the last intermediate id must fit). */
function resolveOutput(spec: JobSpec, steps: number): void {
  if (spec.outputCheckpointId === "") spec.outputCheckpointId = `jobs/${spec.jobId}`;
  checkCheckpointId("spec.output_checkpoint_id", spec.outputCheckpointId);
  checkCheckpointId("spec.output_checkpoint_id", intermediateCheckpointId(spec.outputCheckpointId, steps));
  if (spec.outputCheckpointId.includes("@")) {
    throw invalid(
      `spec.output_checkpoint_id: ${JSON.stringify(spec.outputCheckpointId)} must not contain "@" (kept for "@step-N")`,
    );
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
}

/** The diffusion library's schedule of a resolved TrainingConfig whose (float32) peak is `lr`. */
function lrScheduleOf(t: TrainingConfig, lr: number): LrScheduleConfig {
  if (t.lrSchedule !== LrSchedule.COSINE && t.lrSchedule !== LrSchedule.LINEAR) {
    return { lr, warmupSteps: t.warmupSteps, kind: "constant" };
  }
  return {
    lr,
    warmupSteps: t.warmupSteps,
    kind: t.lrSchedule === LrSchedule.COSINE ? "cosine" : "linear",
    totalSteps: t.steps,
    minLr: lr * Math.fround(t.minLrRatio!),
  };
}

/**
 * The typed settings of a resolved TrainingConfig. The proto's floats are float32: they are rounded here
 * so that a job resumed from its stored spec trains with exactly the values the first run used.
 */
function typedTraining(t: TrainingConfig): ResolvedTraining {
  const f = Math.fround;
  const lr = f(t.learningRate!);
  return {
    steps: t.steps,
    batchSize: t.batchSize,
    learningRate: lr,
    warmupSteps: t.warmupSteps,
    schedule: lrScheduleOf(t, lr),
    weightDecay: f(t.weightDecay),
    maxGradNorm: f(t.maxGradNorm!),
    gradientAccumulation: t.gradientAccumulation,
    emaDecay: f(t.emaDecay),
    beta: f(t.beta!),
    sftWeight: f(t.sftWeight!),
    dpoPositiveLambda: f(t.dpoPositiveLambda!),
    promptDropout: f(t.promptDropout!),
    improveTaskProbability: f(t.improveTaskProbability!),
    reconstructTaskProbability: f(t.reconstructTaskProbability!),
    seed: Number(t.seed),
    checkpointEvery: t.checkpointEvery,
  };
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
  checkIds(spec);
  const kind = checkJobKind(spec.kind, "spec.kind");
  const data = resolveData(spec.data);
  const modelPreset = resolveModelPreset(spec.modelPreset, "spec.model_preset");
  spec.modelPreset = modelPreset;
  resolveInputs(spec, kind);
  // Every default is filled, used by the kind or not: specs stored by earlier versions carry them all, and a
  // resumed job resolves its stored spec again.
  const t = resolveTrainingConfig(spec.training, kind, "spec.training", "all");
  spec.training = t;
  resolveOutput(spec, t.steps);
  checkRange("spec.sampling_steps", spec.samplingSteps, 0, 1000);
  if (spec.guidanceScale !== undefined) checkRange("spec.guidance_scale", spec.guidanceScale, 0, 30);
  return {
    spec,
    job: {
      jobId: spec.jobId,
      runId: spec.runId,
      kind,
      data,
      initCheckpointId: spec.initCheckpointId,
      referenceCheckpointId: spec.referenceCheckpointId,
      modelPreset,
      outputCheckpointId: spec.outputCheckpointId,
      iteration: spec.iteration,
      training: typedTraining(t),
      spinSampler: {
        ...(spec.samplingSteps > 0 ? { steps: spec.samplingSteps } : {}),
        ...(spec.guidanceScale !== undefined ? { guidanceScale: Math.fround(spec.guidanceScale) } : {}),
      },
    },
  };
}
