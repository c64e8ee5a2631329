import { clone, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { formatShapesPrompt, shapesPrompts } from "@idpo/data";
import {
  ReferencePolicy,
  type RunConfig,
  RunConfigSchema,
  RunMethod,
  type TrainingConfig,
  TrainingConfigSchema,
} from "@idpo/proto";

/** Side length of each architecture preset (mirrors libs/diffusion's presets; a test keeps them equal). */
export const PRESET_IMAGE_SIZES: Readonly<Record<string, number>> = { tiny: 16, shapes16: 16, shapes32: 32 };

/** Largest number of images one Scorer.Evaluate call accepts (the Scorer's default limit). */
export const MAX_EVAL_IMAGES = 4096;

/** Run ids: the CreateRun contract; they are also subject tokens and parts of job and checkpoint ids. */
export const RUN_ID_PATTERN = /^[a-z0-9-]{1,63}$/;

/** Checkpoint ids, as the checkpoint store accepts them. */
const CHECKPOINT_ID_PATTERN = /^[A-Za-z0-9._@/-]{1,200}$/;

/** Longest prompt the Generator accepts. */
const MAX_PROMPT_CHARS = 512;

function invalid(field: string, message: string): ConnectError {
  return new ConnectError(`${field}: ${message}`, Code.InvalidArgument);
}

/** A parsed dataset URI (JobSpec.data form). */
export type DatasetUri =
  | { kind: "shapes"; pairs: number; size: number; seed: number }
  | { kind: "file"; dir: string }
  | { kind: "artifact"; prefix: string };

/** Parses and checks a dataset URI; errors are INVALID_ARGUMENT naming `field`. */
export function parseDatasetUri(uri: string, field: string): DatasetUri {
  if (uri === "") throw invalid(field, "required (a file:///dir, artifact://<prefix> or shapes://?... URI)");
  if (uri.startsWith("shapes://")) {
    const q = uri.slice("shapes://".length);
    if (!q.startsWith("?")) throw invalid(field, `"${uri}": expected shapes://?pairs=N&size=S&seed=K`);
    const params = new URLSearchParams(q.slice(1));
    const out = { pairs: 0, size: 0, seed: 0 };
    for (const [k, v] of params) {
      if (k !== "pairs" && k !== "size" && k !== "seed") {
        throw invalid(field, `"${uri}": unknown parameter "${k}" (expected pairs, size, seed)`);
      }
      if (!/^\d+$/.test(v))
        throw invalid(field, `"${uri}": ${k}=${JSON.stringify(v)} is not a non-negative integer`);
      out[k] = Number(v);
    }
    if (out.pairs < 1 || out.pairs > 10_000_000)
      throw invalid(field, `"${uri}": pairs must be in [1, 10000000]`);
    if (out.size < 8 || out.size > 256) throw invalid(field, `"${uri}": size must be in [8, 256]`);
    return { kind: "shapes", ...out };
  }
  if (uri.startsWith("file://")) {
    const dir = decodeURIComponent(uri.slice("file://".length));
    if (!dir.startsWith("/")) throw invalid(field, `"${uri}": expected an absolute path, file:///abs/dir`);
    return { kind: "file", dir };
  }
  if (uri.startsWith("artifact://")) {
    const prefix = uri.slice("artifact://".length);
    if (prefix === "") throw invalid(field, `"${uri}": the artifact prefix is empty`);
    return { kind: "artifact", prefix };
  }
  throw invalid(field, `"${uri}": unsupported scheme (expected file:///, artifact:// or shapes://)`);
}

/** Throws INVALID_ARGUMENT unless `id` is a valid run id. */
export function checkRunId(id: string, field = "run_id"): void {
  if (!RUN_ID_PATTERN.test(id)) {
    throw invalid(field, `${JSON.stringify(id)} is not a valid run id: expected [a-z0-9-]{1,63}`);
  }
}

function checkCheckpointId(id: string, field: string): void {
  if (id === "") return;
  if (!CHECKPOINT_ID_PATTERN.test(id) || id.includes("..")) {
    throw invalid(field, `${JSON.stringify(id)} is not a checkpoint id: expected [A-Za-z0-9._@/-]{1,200}`);
  }
}

function checkRange(
  v: number,
  lo: number,
  hi: number,
  field: string,
  lowOpen = false,
  highOpen = false,
): void {
  const below = lowOpen ? v <= lo : v < lo;
  const above = highOpen ? v >= hi : v > hi;
  if (!Number.isFinite(v) || below || above) {
    throw invalid(field, `${v} is out of range ${lowOpen ? "(" : "["}${lo}, ${hi}${highOpen ? ")" : "]"}`);
  }
}

/** What a TrainingConfig trains, which decides its kind-specific defaults. */
export type TrainingRole = "pretrain" | "improver" | "sft" | "dpo";

/**
 * Checks a TrainingConfig against the trainer contract and returns a copy with every documented default
 * filled in for `role` (so that a Run shows the settings actually used).
 */
export function fillTrainingConfig(
  t: TrainingConfig | undefined,
  role: TrainingRole,
  field: string,
): TrainingConfig {
  if (!t) throw invalid(field, "required (at least steps)");
  const out = clone(TrainingConfigSchema, t);
  if (out.steps < 1 || out.steps > 1_000_000)
    throw invalid(`${field}.steps`, `${out.steps} is out of range [1, 1000000]`);
  if (out.batchSize === 0) out.batchSize = 16;
  if (out.batchSize > 4096) throw invalid(`${field}.batch_size`, `${out.batchSize} is more than 4096`);
  out.learningRate ??= role === "dpo" ? 2e-5 : 1e-3;
  checkRange(out.learningRate, 0, 1, `${field}.learning_rate`, true);
  if (out.warmupSteps > out.steps) {
    throw invalid(`${field}.warmup_steps`, `${out.warmupSteps} is more than steps (${out.steps})`);
  }
  checkRange(out.weightDecay, 0, 1, `${field}.weight_decay`);
  out.maxGradNorm ??= 1.0;
  checkRange(out.maxGradNorm, 0, 1e6, `${field}.max_grad_norm`);
  if (out.gradientAccumulation === 0) out.gradientAccumulation = 1;
  if (out.gradientAccumulation > 4096) {
    throw invalid(`${field}.gradient_accumulation`, `${out.gradientAccumulation} is more than 4096`);
  }
  checkRange(out.emaDecay, 0, 1, `${field}.ema_decay`, false, true);
  if (role === "dpo") {
    out.beta ??= 2000;
    checkRange(out.beta, 0, 1e6, `${field}.beta`, true);
  } else if (out.beta !== undefined) {
    throw invalid(`${field}.beta`, "only applies to DPO and SPIN training");
  }
  if (role === "pretrain" || role === "sft") {
    out.promptDropout ??= 0.1;
    checkRange(out.promptDropout, 0, 1, `${field}.prompt_dropout`);
  }
  if (role === "improver") {
    out.improveTaskProbability ??= 0.8;
    out.reconstructTaskProbability ??= 0.1;
    checkRange(out.improveTaskProbability, 0, 1, `${field}.improve_task_probability`);
    checkRange(out.reconstructTaskProbability, 0, 1, `${field}.reconstruct_task_probability`);
    if (out.improveTaskProbability + out.reconstructTaskProbability > 1 + 1e-6) {
      throw invalid(
        `${field}.reconstruct_task_probability`,
        `improve (${out.improveTaskProbability}) + reconstruct (${out.reconstructTaskProbability}) exceeds 1`,
      );
    }
  }
  if (out.checkpointEvery > out.steps) {
    throw invalid(`${field}.checkpoint_every`, `${out.checkpointEvery} is more than steps (${out.steps})`);
  }
  return out;
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
  checkRange(out, 0, 30, field);
  return out;
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
  const dataset = parseDatasetUri(c.dataset, "config.dataset");
  if (c.modelPreset === "") c.modelPreset = "shapes16";
  const side = PRESET_IMAGE_SIZES[c.modelPreset];
  if (side === undefined) {
    throw invalid(
      "config.model_preset",
      `unknown preset "${c.modelPreset}" (expected ${Object.keys(PRESET_IMAGE_SIZES).join(", ")})`,
    );
  }
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
    c.baseTraining = fillTrainingConfig(c.baseTraining, "pretrain", "config.base_training");
  if (iterative && c.improverCheckpointId === "") {
    c.improverTraining = fillTrainingConfig(c.improverTraining, "improver", "config.improver_training");
  } else if (!iterative && c.improverCheckpointId !== "") {
    throw invalid("config.improver_checkpoint_id", "only applies to ITERATIVE_DPO runs");
  }
  c.policyTraining = fillTrainingConfig(
    c.policyTraining,
    c.method === RunMethod.SFT ? "sft" : "dpo",
    "config.policy_training",
  );
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
