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
 * The quickstart's run: iterative DPO on the shapes world at 16×16 with the `tiny` preset, sized so that the
 * whole loop (base, improver, K × (pairs, DPO, evaluation)) fits in 10 minutes on two CPU cores. Measured
 * with the defaults on a 2-core machine: 340 s wall, 355 CPU-seconds (base 214 s, improver 60 s, the two
 * iterations 65 s). At this budget the base model draws coloured blobs where the prompt's shape goes, and the
 * iterations' reward changes stay within the confidence intervals: the quickstart shows the loop working,
 * `idpo bench paper` measures the method.
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
