import { create } from "@bufbuild/protobuf";
import { formatShapesPrompt, shapesPrompts } from "@idpo/data";
import { pretrainedAvailable, startFromPretrained } from "@idpo/mesh";
import { type RunConfig, RunConfigSchema, RunMethod } from "@idpo/proto";

/** What `idpo quickstart` lets the user choose. */
export interface QuickstartSettings {
  /** Iterations K. */
  iterations: number;
  /** Online pairs per iteration. */
  pairs: number;
  /** Master seed (dataset, prompts, training, evaluation). */
  seed: number;
  /** Train the base and improver here (preset tiny) instead of starting from the shipped shapes16 pair. */
  fromScratch?: boolean;
}

/** Defaults: sized to finish in a few minutes on two CPU cores. */
export const QUICKSTART_DEFAULTS: QuickstartSettings = { iterations: 2, pairs: 256, seed: 0 };

/** Held-out prompts evaluated by the quickstart (every fourth test prompt: all shapes, several colours). */
export function quickstartEvalPrompts(): string[] {
  const test = shapesPrompts("test").map(formatShapesPrompt);
  const out: string[] = [];
  for (let i = 0; i < test.length; i += 4) out.push(test[i]);
  return out;
}

/**
 * The quickstart's run. By default it starts from the shipped shapes16 base and improver (models/shapes16)
 * and runs K iterations of online pairs + Diffusion-DPO on them, so the first thing a user sees is the method
 * acting on a model that already draws its prompts. With `fromScratch` (or without the shipped files) it
 * trains its own base and improver with the `tiny` preset instead: see quickstartScratchConfig.
 */
export function quickstartRunConfig(s: QuickstartSettings): RunConfig {
  if (s.fromScratch || !pretrainedAvailable()) return quickstartScratchConfig(s);
  const config = create(RunConfigSchema, {
    name: "quickstart",
    method: RunMethod.ITERATIVE_DPO,
    dataset: `shapes://?pairs=2048&size=16&seed=${s.seed}`,
    modelPreset: "shapes16",
    policyTraining: QUICKSTART_POLICY_TRAINING,
    iterations: s.iterations,
    pairsPerIteration: s.pairs,
    shardSize: 16,
    samplingSteps: 20,
    evalPrompts: quickstartEvalPrompts(),
    evalSamplesPerPrompt: 8,
    seed: BigInt(s.seed),
  });
  startFromPretrained(config);
  return config;
}

/**
 * Policy training per iteration when starting from the shipped checkpoints: Diffusion-DPO with
 * DPO-Positive's penalty (λ 5) on the winner's loss rising above the reference's. Chosen on validation
 * (train-split) prompts by the paper benchmark's search (docs/RESULTS.md, "What made it work"): plain DPO's
 * iterates swing (the second iteration lost 0.03–0.06 reward on both seeds), while DPO-Positive rose and
 * held (0.698 → 0.709 → 0.717 → 0.714 and 0.697 → 0.712 → 0.712 → 0.714 over three iterations of 384 pairs,
 * 60 steps × 32 each). The quickstart runs two shorter iterations of the same recipe.
 */
const QUICKSTART_POLICY_TRAINING = {
  steps: 50,
  batchSize: 32,
  learningRate: 2e-5,
  warmupSteps: 5,
  beta: 1000,
  dpoPositiveLambda: 5,
};

/**
 * The quickstart's run: iterative DPO on the shapes world at 16×16 with the `tiny` preset, sized so that the
 * whole loop (base, improver, K × (pairs, DPO, evaluation)) fits in 10 minutes on two CPU cores. Measured
 * with the defaults on a 2-core machine: 340 s wall, 355 CPU-seconds (base 214 s, improver 60 s, the two
 * iterations 65 s). At this budget the base model draws coloured blobs where the prompt's shape goes, and the
 * iterations' reward changes stay within the confidence intervals: the quickstart shows the loop working,
 * `idpo bench paper` measures the method.
 */
export function quickstartScratchConfig(s: QuickstartSettings): RunConfig {
  return create(RunConfigSchema, {
    name: "quickstart",
    method: RunMethod.ITERATIVE_DPO,
    dataset: `shapes://?pairs=2048&size=16&seed=${s.seed}`,
    modelPreset: "tiny",
    baseTraining: { steps: 500, batchSize: 32, learningRate: 3e-3, warmupSteps: 20 },
    improverTraining: { steps: 300, batchSize: 32, learningRate: 3e-3, warmupSteps: 20 },
    policyTraining: { steps: 40, batchSize: 16, learningRate: 1e-4, beta: 2000 },
    iterations: s.iterations,
    pairsPerIteration: s.pairs,
    shardSize: 16,
    samplingSteps: 10,
    evalPrompts: quickstartEvalPrompts(),
    evalSamplesPerPrompt: 4,
    seed: BigInt(s.seed),
  });
}
