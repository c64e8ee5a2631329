import { clone } from "@bufbuild/protobuf";
import { type JobKind, LrSchedule, type TrainingConfig, TrainingConfigSchema } from "@idpo/proto";
import { checkRange, invalidField } from "./contract-error.js";
import { isPreferenceKind, kindUses, OBJECTIVE_SETTINGS, type ObjectiveSetting } from "./job-kinds.js";

/** The documented defaults of TrainingConfig (trainer_service.proto), in one place. */
export const TRAINING_DEFAULTS = {
  /** Examples per optimiser step. */
  batchSize: 16,
  /** Peak learning rate of PRETRAIN / IMPROVER / SFT. */
  learningRate: 1e-3,
  /** Peak learning rate of DPO / SPIN. */
  preferenceLearningRate: 2e-5,
  /** Global gradient-norm clip. */
  maxGradNorm: 1.0,
  /** Micro-batches per optimiser step. */
  gradientAccumulation: 1,
  /** DPO/SPIN inverse temperature (the paper's value). */
  beta: 2000,
  /** PRETRAIN/SFT prompt dropout. */
  promptDropout: 0.1,
  /** IMPROVER: probability of the improvement task. */
  improveTaskProbability: 0.8,
  /** IMPROVER: probability of the reconstruction task. */
  reconstructTaskProbability: 0.1,
  /** Final learning rate of a decaying schedule, as a fraction of the peak. */
  minLrRatio: 0.1,
  /** DPO/SPIN: weight of RPO's winner ε-MSE term (0 = plain Diffusion-DPO). */
  sftWeight: 0,
  /** DPO/SPIN: DPO-Positive's λ (0 = plain Diffusion-DPO). */
  dpoPositiveLambda: 0,
} as const;

/** The limits of TrainingConfig. */
export const TRAINING_LIMITS = {
  /** Most optimiser steps of one job. */
  maxSteps: 1_000_000,
  /** Largest batch (and largest number of micro-batches). */
  maxBatchSize: 4096,
  /** Largest β. */
  maxBeta: 1e6,
  /** Largest gradient-norm clip. */
  maxGradNorm: 1e6,
} as const;

/**
 * Which defaults `resolveTrainingConfig` fills: "all" fills every documented one (what a job stores and
 * runs with); "used" leaves unset the objective settings the kind does not read (what a run's stage shows).
 */
export type TrainingDefaults = "all" | "used";

const OBJECTIVE_RANGES: Readonly<Record<ObjectiveSetting, [number, number, { lowOpen?: boolean }]>> = {
  beta: [0, TRAINING_LIMITS.maxBeta, { lowOpen: true }],
  promptDropout: [0, 1, {}],
  improveTaskProbability: [0, 1, {}],
  reconstructTaskProbability: [0, 1, {}],
  sftWeight: [0, 1000, {}],
  dpoPositiveLambda: [0, 10_000, {}],
};

function resolveObjectiveSettings(
  t: TrainingConfig,
  kind: JobKind,
  field: string,
  fill: TrainingDefaults,
): void {
  for (const setting of Object.keys(OBJECTIVE_RANGES) as ObjectiveSetting[]) {
    if (fill === "all" || kindUses(kind, setting)) t[setting] ??= TRAINING_DEFAULTS[setting];
    const v = t[setting];
    if (v === undefined) continue;
    const [lo, hi, bounds] = OBJECTIVE_RANGES[setting];
    checkRange(`${field}.${OBJECTIVE_SETTINGS[setting].protoName}`, v, lo, hi, bounds);
  }
  const improve = t.improveTaskProbability ?? 0;
  const reconstruct = t.reconstructTaskProbability ?? 0;
  if (improve + reconstruct > 1 + 1e-6) {
    throw invalidField(
      `${field}.reconstruct_task_probability`,
      `improve (${improve}) + reconstruct (${reconstruct}) must not exceed 1`,
    );
  }
}

/** Whether `schedule` decays from the peak (and so reads min_lr_ratio and needs steps past the warmup). */
export function isDecayingSchedule(schedule: LrSchedule): boolean {
  return schedule === LrSchedule.COSINE || schedule === LrSchedule.LINEAR;
}

function resolveLrSchedule(t: TrainingConfig, field: string): void {
  if (!(t.lrSchedule in LrSchedule)) {
    throw invalidField(
      `${field}.lr_schedule`,
      `unknown schedule ${t.lrSchedule} (CONSTANT, COSINE or LINEAR)`,
    );
  }
  if (!isDecayingSchedule(t.lrSchedule)) {
    if (t.minLrRatio !== undefined) {
      throw invalidField(`${field}.min_lr_ratio`, "only applies to the COSINE and LINEAR schedules");
    }
    return;
  }
  t.minLrRatio ??= TRAINING_DEFAULTS.minLrRatio;
  checkRange(`${field}.min_lr_ratio`, t.minLrRatio, 0, 1);
  if (t.warmupSteps >= t.steps) {
    throw invalidField(
      `${field}.warmup_steps`,
      `${t.warmupSteps} leaves no step to decay over (${LrSchedule[t.lrSchedule]} needs warmup_steps < steps ${t.steps})`,
    );
  }
}

function checkStepCounts(t: TrainingConfig, field: string): void {
  if (t.warmupSteps > t.steps) {
    throw invalidField(`${field}.warmup_steps`, `${t.warmupSteps} is more than steps (${t.steps})`);
  }
  if (t.checkpointEvery > t.steps) {
    throw invalidField(`${field}.checkpoint_every`, `${t.checkpointEvery} is more than steps (${t.steps})`);
  }
}

/**
 * Checks a TrainingConfig of a job of `kind` against the trainer contract and returns a copy with the
 * documented defaults filled in (see TrainingDefaults). Both CreateRun (for each stage of a run) and
 * StartJob call it, so a stage the Controller accepts is a job the Trainer accepts. Errors are
 * INVALID_ARGUMENT with a message that starts with the field, e.g. "spec.training.steps: 0 is outside …".
 */
export function resolveTrainingConfig(
  input: TrainingConfig | undefined,
  kind: JobKind,
  field: string,
  fill: TrainingDefaults = "all",
): TrainingConfig {
  if (!input) throw invalidField(field, "required (at least steps)");
  const t = clone(TrainingConfigSchema, input);
  checkRange(`${field}.steps`, t.steps, 1, TRAINING_LIMITS.maxSteps);
  if (t.batchSize === 0) t.batchSize = TRAINING_DEFAULTS.batchSize;
  checkRange(`${field}.batch_size`, t.batchSize, 1, TRAINING_LIMITS.maxBatchSize);
  if (t.gradientAccumulation === 0) t.gradientAccumulation = TRAINING_DEFAULTS.gradientAccumulation;
  if (t.batchSize % t.gradientAccumulation !== 0) {
    throw invalidField(
      `${field}.gradient_accumulation`,
      `${t.gradientAccumulation} does not divide ${field}.batch_size ${t.batchSize}`,
    );
  }
  t.learningRate ??= isPreferenceKind(kind)
    ? TRAINING_DEFAULTS.preferenceLearningRate
    : TRAINING_DEFAULTS.learningRate;
  checkRange(`${field}.learning_rate`, t.learningRate, 0, 1, { lowOpen: true });
  checkRange(`${field}.weight_decay`, t.weightDecay, 0, 1);
  t.maxGradNorm ??= TRAINING_DEFAULTS.maxGradNorm;
  checkRange(`${field}.max_grad_norm`, t.maxGradNorm, 0, TRAINING_LIMITS.maxGradNorm);
  checkRange(`${field}.ema_decay`, t.emaDecay, 0, 1, { highOpen: true });
  resolveObjectiveSettings(t, kind, field, fill);
  if (t.seed > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw invalidField(`${field}.seed`, `${t.seed} is larger than ${Number.MAX_SAFE_INTEGER}`);
  }
  checkStepCounts(t, field);
  resolveLrSchedule(t, field);
  return t;
}
