import { create } from "@bufbuild/protobuf";
import { type RunConfig, RunConfigSchema } from "@idpo/proto";

/** Evaluation prompts of the tiny run. */
export const TINY_EVAL_PROMPTS = [
  "a small red circle on a black background",
  "a large green square on a navy background",
];

/** A quickstart-shaped run (base, improver, one iteration of 8 pairs in 2 shards, evaluations) that takes
 * about half a minute on two cores: every stage and every service, none of the learning. */
export function tinyRunConfig(): RunConfig {
  return create(RunConfigSchema, {
    name: "quickstart-test",
    dataset: "shapes://?pairs=128&size=16&seed=2",
    modelPreset: "tiny",
    baseTraining: { steps: 16, batchSize: 8 },
    improverTraining: { steps: 16, batchSize: 8 },
    policyTraining: { steps: 4, batchSize: 4 },
    iterations: 1,
    pairsPerIteration: 8,
    shardSize: 4,
    samplingSteps: 4,
    evalPrompts: TINY_EVAL_PROMPTS,
    evalSamplesPerPrompt: 2,
    seed: 5n,
  });
}
