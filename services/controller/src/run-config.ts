import { clone, fromBinary, toBinary } from "@bufbuild/protobuf";
import { formatShapesPrompt, shapesPrompts } from "@idpo/data";
import {
  checkpointArtifact,
  checkRange,
  type DataUri,
  invalidField,
  MAX_SHAPES_PAIRS,
  MODEL_PRESET_IMAGE_SIZES,
  type ModelPresetName,
  parseDataUri,
  rejectUnusedSettings,
  resolveModelPreset,
  resolveTrainingConfig,
} from "@idpo/mesh";
import {
  JobKind,
  ReferencePolicy,
  type RunConfig,
  RunConfigSchema,
  RunMethod,
  type TrainingConfig,
} from "@idpo/proto";

/** Largest number of images one Scorer.Evaluate call accepts (the Scorer's default limit). */
export const MAX_EVAL_IMAGES = 4096;

/** Run ids: the CreateRun contract; they are also subject tokens and parts of job and checkpoint ids. */
export const RUN_ID_PATTERN = /^[a-z0-9-]{1,63}$/;

/** Longest prompt the Generator accepts. */
const MAX_PROMPT_CHARS = 512;

const invalid = invalidField;

/** Throws INVALID_ARGUMENT unless `id` is a valid run id. */
export function checkRunId(id: string, field = "run_id"): void {
  if (!RUN_ID_PATTERN.test(id)) {
    throw invalid(field, `${JSON.stringify(id)} is not a valid run id: expected [a-z0-9-]{1,63}`);
  }
}

function checkCheckpointId(id: string, field: string): void {
  if (id === "") return;
  try {
    checkpointArtifact(id);
  } catch (e) {
    throw invalid(field, (e as Error).message);
  }
}

/** The trainer job kind of a run's policy stage. */
export function policyJobKind(method: RunMethod): JobKind {
  if (method === RunMethod.SFT) return JobKind.SFT;
  if (method === RunMethod.SPIN) return JobKind.SPIN;
  return JobKind.DPO;
}

/**
 * Checks the TrainingConfig of a run's stage, which becomes a trainer job of `kind`, with the trainer's own
 * contract, and returns a copy with the defaults that job uses filled in (so that a Run shows the settings
 * actually used). A setting the job's objective ignores is rejected rather than silently dropped.
 */
function stageTraining(t: TrainingConfig | undefined, kind: JobKind, field: string): TrainingConfig {
  if (t) rejectUnusedSettings(t, kind, field);
  return resolveTrainingConfig(t, kind, field, "used");
}

function checkPrompts(prompts: readonly string[], field: string): void {
  for (let i = 0; i < prompts.length; i++) {
    const p = prompts[i];
    if (p.trim() === "") throw invalid(`${field}[${i}]`, "empty prompt");
    if (p.length > MAX_PROMPT_CHARS)
      throw invalid(`${field}[${i}]`, `${p.length} characters is more than ${MAX_PROMPT_CHARS}`);
  }
}

function optionalScale(v: number | undefined, fallback: number, field: string): number {
  const out = v ?? fallback;
  checkRange(field, out, 0, 30);
  return out;
}

/**
 * offline_pairs_per_iteration: windows of the dataset join each iteration's online pairs, so it needs an
 * iterative DPO run and a dataset without a window of its own; a shapes dataset's size is known here, a
 * file or artifact dataset's is checked by the Trainer when the iteration's job starts.
 */
function checkOfflineMix(c: RunConfig, dataset: DataUri, iterative: boolean): void {
  const n = c.offlinePairsPerIteration;
  if (n === 0) return;
  const field = "config.offline_pairs_per_iteration";
  if (!iterative)
    throw invalid(field, `only applies to ITERATIVE_DPO runs (this one is ${RunMethod[c.method]})`);
  if (n > MAX_SHAPES_PAIRS) throw invalid(field, `${n} is more than ${MAX_SHAPES_PAIRS}`);
  if (dataset.window) {
    throw invalid(
      field,
      `needs config.dataset without a window (it has #skip=${dataset.window.skip}&take=${dataset.window.take})`,
    );
  }
  if (dataset.kind === "shapes" && n > dataset.pairs) {
    throw invalid(field, `${n} is more than the ${dataset.pairs} pairs of config.dataset`);
  }
}

/**
 * Validates a RunConfig and returns a copy with the documented defaults filled in. Errors are
 * INVALID_ARGUMENT with a message that starts with the offending field (e.g. "config.shard_size: ...").
 */
export function validateRunConfig(config: RunConfig | undefined): RunConfig {
  if (!config) throw invalid("config", "required");
  const c = clone(RunConfigSchema, config);
  if (c.method === RunMethod.UNSPECIFIED) c.method = RunMethod.ITERATIVE_DPO;
  if (!(c.method in RunMethod)) throw invalid("config.method", `unknown method ${c.method}`);
  if (c.name.length > 200) throw invalid("config.name", "longer than 200 characters");
  const dataset = parseDataUri(c.dataset, "config.dataset");
  c.modelPreset = resolveModelPreset(c.modelPreset, "config.model_preset");
  const side = MODEL_PRESET_IMAGE_SIZES[c.modelPreset as ModelPresetName];
  if (dataset.kind === "shapes" && dataset.size !== side && c.baseCheckpointId === "") {
    throw invalid(
      "config.dataset",
      `images of size ${dataset.size} do not fit model_preset "${c.modelPreset}" (${side}×${side})`,
    );
  }
  checkCheckpointId(c.baseCheckpointId, "config.base_checkpoint_id");
  checkCheckpointId(c.improverCheckpointId, "config.improver_checkpoint_id");
  checkCheckpointId(c.startCheckpointId, "config.start_checkpoint_id");
  const iterative = c.method === RunMethod.ITERATIVE_DPO;
  const online = iterative || c.method === RunMethod.SPIN;
  if (c.baseCheckpointId === "")
    c.baseTraining = stageTraining(c.baseTraining, JobKind.PRETRAIN, "config.base_training");
  if (iterative && c.improverCheckpointId === "") {
    c.improverTraining = stageTraining(c.improverTraining, JobKind.IMPROVER, "config.improver_training");
  } else if (!iterative && c.improverCheckpointId !== "") {
    throw invalid("config.improver_checkpoint_id", "only applies to ITERATIVE_DPO runs");
  }
  c.policyTraining = stageTraining(c.policyTraining, policyJobKind(c.method), "config.policy_training");
  if (c.iterations === 0) c.iterations = online ? 3 : 1;
  if (!online && c.iterations !== 1) {
    throw invalid(
      "config.iterations",
      `${RunMethod[c.method]} runs have exactly one iteration, got ${c.iterations}`,
    );
  }
  if (c.iterations > 100) throw invalid("config.iterations", `${c.iterations} is more than 100`);
  if (c.pairsPerIteration === 0) c.pairsPerIteration = 512;
  if (c.pairsPerIteration > 1_000_000)
    throw invalid("config.pairs_per_iteration", `${c.pairsPerIteration} is more than 1000000`);
  if (c.shardSize === 0) c.shardSize = 32;
  if (c.shardSize > 4096) throw invalid("config.shard_size", `${c.shardSize} is more than 4096`);
  if (c.reference === ReferencePolicy.UNSPECIFIED) c.reference = ReferencePolicy.BASE;
  if (!(c.reference in ReferencePolicy))
    throw invalid("config.reference", `unknown reference policy ${c.reference}`);
  if (c.samplingSteps === 0) c.samplingSteps = 20;
  if (c.samplingSteps > 1000) throw invalid("config.sampling_steps", `${c.samplingSteps} is more than 1000`);
  c.guidanceScale = optionalScale(c.guidanceScale, 3.0, "config.guidance_scale");
  c.textGuidanceScale = optionalScale(c.textGuidanceScale, 3.5, "config.text_guidance_scale");
  c.imageGuidanceScale = optionalScale(c.imageGuidanceScale, 3.0, "config.image_guidance_scale");
  c.improveStrength = c.improveStrength ?? 1;
  if (!(c.improveStrength > 0 && c.improveStrength <= 1))
    throw invalid("config.improve_strength", `${c.improveStrength} is outside (0, 1]`);
  checkOfflineMix(c, dataset, iterative);
  if (c.evalPrompts.length === 0) c.evalPrompts = shapesPrompts("test").map(formatShapesPrompt);
  checkPrompts(c.evalPrompts, "config.eval_prompts");
  if (c.evalSamplesPerPrompt === 0) c.evalSamplesPerPrompt = 4;
  if (c.evalSamplesPerPrompt > 256)
    throw invalid("config.eval_samples_per_prompt", `${c.evalSamplesPerPrompt} is more than 256`);
  const evalImages = c.evalPrompts.length * c.evalSamplesPerPrompt;
  if (evalImages > MAX_EVAL_IMAGES) {
    throw invalid(
      "config.eval_prompts",
      `${c.evalPrompts.length} prompts × ${c.evalSamplesPerPrompt} samples = ${evalImages} images, more than ${MAX_EVAL_IMAGES}`,
    );
  }
  checkPrompts(c.trainPrompts, "config.train_prompts");
  if (iterative && c.trainPrompts.length === 0 && dataset.kind === "artifact") {
    throw invalid(
      "config.train_prompts",
      "required when config.dataset is an artifact:// URI (its prompts cannot be listed)",
    );
  }
  // Round-trip through the wire format, so float fields hold the float32 values a stored run reads back
  // (CreateRun compares configs for idempotency).
  return fromBinary(RunConfigSchema, toBinary(RunConfigSchema, c));
}
