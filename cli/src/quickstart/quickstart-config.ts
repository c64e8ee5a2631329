import { create } from "@bufbuild/protobuf";
import { formatShapesPrompt, shapesPrompts } from "@idpo/data";
import { type RunConfig, RunConfigSchema, RunMethod } from "@idpo/proto";

/** What `idpo quickstart` lets the user choose. */
export interface QuickstartSettings {
  /** Iterations K. */
  iterations: number;
  /** Online pairs per iteration. */
  pairs: number;
  /** Master seed (dataset, prompts, training, evaluation). */
  seed: number;
}

/** Defaults: sized to finish in a few minutes on two CPU cores. */
export const QUICKSTART_DEFAULTS: QuickstartSettings = { iterations: 2, pairs: 64, seed: 0 };

/** Held-out prompts evaluated by the quickstart (every fourth test prompt: all shapes, several colours). */
export function quickstartEvalPrompts(): string[] {
  const test = shapesPrompts("test").map(formatShapesPrompt);
  const out: string[] = [];
  for (let i = 0; i < test.length; i += 4) out.push(test[i]);
  return out;
}

/**
 * The quickstart's run: iterative DPO on the shapes world at 16×16 with the `tiny` preset. Step counts are
 * chosen so that the whole loop (base, improver, K × (pairs, DPO, evaluation)) costs about 8 CPU-minutes
 * (measured: 600 CPU-seconds with 600/400 base/improver steps), i.e. well under 10 minutes of wall time on
 * two idle cores; the base model draws coloured blobs where the prompt's shape goes, not clean shapes.
 */
export function quickstartRunConfig(s: QuickstartSettings): RunConfig {
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
