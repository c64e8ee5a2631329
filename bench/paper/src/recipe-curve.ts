import { readFile, writeFile } from "node:fs/promises";
import { PRETRAINED_BASE_SEED, PRETRAINED_DATASET } from "@idpo/mesh";
import type { PaperConfig } from "./config.js";
import type { PaperResults } from "./results.js";
import { inputsHash } from "./stage-runner.js";

/** The shipped base's learning curve and the shipped base's own validation reward beside it. */
export type RecipeCurve = Required<Pick<PaperResults, "baseCurve" | "baseCurveReference">>;

/**
 * The learning curve as the report directory keeps it (`results/<config>/base-learning-curve.json`), so that
 * it is measured once: it depends only on the base recipe, the shipped dataset and seed, the validation
 * prompts of that seed and the sampler, which `inputs` hashes.
 */
export interface StoredRecipeCurve extends RecipeCurve {
  /** inputsHash of recipeCurveInputs: a file whose hash differs is measured again. */
  inputs: string;
  /** When and by what the curve was measured. */
  measured: string;
}

/** Whether this configuration and seed measure the shipped base's learning curve (see pretrainedRecipeCurve). */
export function measuresRecipeCurve(cfg: PaperConfig, seed: number): boolean {
  return cfg.startFrom === "pretrained" && cfg.baseCurvePoints > 0 && seed === PRETRAINED_BASE_SEED;
}

/** Everything the curve's figures depend on. */
export function recipeCurveInputs(cfg: PaperConfig): string {
  return inputsHash({
    preset: cfg.modelPreset,
    imageSize: cfg.imageSize,
    base: cfg.base,
    points: cfg.baseCurvePoints,
    dataset: PRETRAINED_DATASET,
    seed: PRETRAINED_BASE_SEED,
    validation: {
      prompts: cfg.eval.validationPrompts,
      samplesPerPrompt: cfg.eval.validationSamplesPerPrompt,
      trainPrompts: cfg.eval.trainPrompts,
    },
    sampling: { steps: cfg.sampling.steps, guidanceScale: cfg.sampling.guidanceScale },
  });
}

/** The stored curve at `path` when it was measured with `cfg`'s inputs; undefined when absent or stale. */
export async function readRecipeCurve(
  path: string,
  cfg: PaperConfig,
): Promise<StoredRecipeCurve | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
  let stored: StoredRecipeCurve;
  try {
    stored = JSON.parse(text) as StoredRecipeCurve;
  } catch (e) {
    throw new Error(`${path}: not JSON (${(e as Error).message}); delete it to measure the curve again`);
  }
  if (stored.inputs !== recipeCurveInputs(cfg)) return undefined;
  if (!Array.isArray(stored.baseCurve) || stored.baseCurve.length === 0 || !stored.baseCurveReference)
    throw new Error(`${path}: no curve in it; delete it to measure the curve again`);
  return stored;
}

/** Writes a measured curve for later reports to reuse. */
export async function writeRecipeCurve(
  path: string,
  cfg: PaperConfig,
  curve: RecipeCurve,
  measured: string,
): Promise<void> {
  const stored: StoredRecipeCurve = { inputs: recipeCurveInputs(cfg), measured, ...curve };
  await writeFile(path, `${JSON.stringify(stored, null, 1)}\n`);
}
