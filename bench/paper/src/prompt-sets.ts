import { formatShapesPrompt, shapesPrompts } from "@idpo/data";
import { labelledSeed } from "@idpo/runtime";
import type { EvalConfig } from "./config.js";

/** The prompt sets every model is evaluated on. */
export type PromptSetName = "train" | "test" | "validation";

/** A prompt set with its sampling seed: image j of prompt i uses `seed + i × samplesPerPrompt + j` (the Generator's rule). */
export interface PromptSet {
  /** Which set. */
  name: PromptSetName;
  /** Prompts, in a fixed order. */
  prompts: string[];
  /** Samples per prompt. */
  samplesPerPrompt: number;
  /** Base seed of the set (the same for every model, so every model is sampled with the same noise). */
  seed: number;
}

/** `k` indices spread evenly over [0, n): ⌊(i + ½)·n/k⌋. */
export function evenlySpaced(n: number, k: number): number[] {
  if (!Number.isInteger(n) || !Number.isInteger(k) || k < 0 || k > n) {
    throw new Error(`evenlySpaced: cannot pick ${k} of ${n}`);
  }
  const out: number[] = [];
  for (let i = 0; i < k; i++) out.push(Math.floor(((i + 0.5) * n) / k));
  return out;
}

/** A 31-bit seed derived from the master seed and a label (no two labels share a stream). */
export function deriveSeed(master: number, label: string): number {
  return labelledSeed("idpo-bench", master, label) >>> 1;
}

/**
 * The evaluation sets: `trainPrompts` evenly spaced over the shapes world's train split, `validationPrompts`
 * evenly spaced over the train prompts left after that (disjoint from the evaluated ones), `testPrompts`
 * evenly spaced over the held-out split.
 */
export function promptSets(cfg: EvalConfig, master: number): Record<PromptSetName, PromptSet> {
  const train = shapesPrompts("train").map(formatShapesPrompt);
  const test = shapesPrompts("test").map(formatShapesPrompt);
  const trainIdx = evenlySpaced(train.length, cfg.trainPrompts);
  const taken = new Set(trainIdx);
  const rest = train.filter((_, i) => !taken.has(i));
  const validation = evenlySpaced(rest.length, cfg.validationPrompts).map((i) => rest[i]);
  const set = (name: PromptSetName, prompts: string[], n: number): PromptSet => ({
    name,
    prompts,
    samplesPerPrompt: n,
    seed: deriveSeed(master, `eval:${name}`),
  });
  return {
    train: set(
      "train",
      trainIdx.map((i) => train[i]),
      cfg.samplesPerPrompt,
    ),
    test: set(
      "test",
      evenlySpaced(test.length, cfg.testPrompts).map((i) => test[i]),
      cfg.samplesPerPrompt,
    ),
    validation: set("validation", validation, cfg.validationSamplesPerPrompt),
  };
}
