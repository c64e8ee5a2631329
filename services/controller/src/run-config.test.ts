import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { formatShapesPrompt, shapesPrompts } from "@idpo/data";
import { ReferencePolicy, type RunConfig, RunConfigSchema, RunMethod } from "@idpo/proto";
import { describe, expect, it } from "vitest";
import { validateRunConfig } from "./run-config.js";

type Init = Exclude<MessageInitShape<typeof RunConfigSchema>, RunConfig>;
const base: Init = {
  dataset: "shapes://?pairs=100&size=16&seed=3",
  baseTraining: { steps: 10 },
  improverTraining: { steps: 10 },
  policyTraining: { steps: 10 },
};

function rejects(over: Init, field: string): void {
  let err: unknown;
  try {
    validateRunConfig(create(RunConfigSchema, { ...base, ...over }));
  } catch (e) {
    err = e;
  }
  expect(err, `expected an error naming ${field}`).toBeInstanceOf(ConnectError);
  expect((err as ConnectError).code).toBe(Code.InvalidArgument);
  expect((err as ConnectError).rawMessage.startsWith(`${field}:`), (err as ConnectError).rawMessage).toBe(
    true,
  );
}

describe("validateRunConfig", () => {
  it("fills every documented default", () => {
    const c = validateRunConfig(create(RunConfigSchema, base));
    expect(c.method).toBe(RunMethod.ITERATIVE_DPO);
    expect(c.modelPreset).toBe("shapes16");
    expect(c.iterations).toBe(3);
    expect(c.pairsPerIteration).toBe(512);
    expect(c.shardSize).toBe(32);
    expect(c.reference).toBe(ReferencePolicy.BASE);
    expect(c.samplingSteps).toBe(20);
    expect(c.guidanceScale).toBe(3);
    expect(c.textGuidanceScale).toBe(3.5);
    expect(c.imageGuidanceScale).toBe(3);
    expect(c.improveStrength).toBe(1);
    expect(c.evalSamplesPerPrompt).toBe(4);
    expect(c.evalPrompts).toEqual(shapesPrompts("test").map(formatShapesPrompt));
    expect(c.trainPrompts).toEqual([]);
    expect(c.baseTraining!.batchSize).toBe(16);
    expect(c.baseTraining!.learningRate).toBeCloseTo(1e-3, 9);
    expect(c.baseTraining!.promptDropout).toBeCloseTo(0.1, 6);
    expect(c.baseTraining!.maxGradNorm).toBe(1);
    expect(c.improverTraining!.improveTaskProbability).toBeCloseTo(0.8, 6);
    expect(c.improverTraining!.reconstructTaskProbability).toBeCloseTo(0.1, 6);
    expect(c.policyTraining!.learningRate).toBeCloseTo(2e-5, 9);
    expect(c.policyTraining!.beta).toBe(2000);
    expect(c.policyTraining!.gradientAccumulation).toBe(1);
  });

  it("uses one iteration for offline DPO and SFT, and skips what the method does not use", () => {
    const sft = validateRunConfig(
      create(RunConfigSchema, { ...base, method: RunMethod.SFT, improverTraining: undefined }),
    );
    expect(sft.iterations).toBe(1);
    expect(sft.policyTraining!.learningRate).toBeCloseTo(1e-3, 9);
    expect(sft.policyTraining!.beta).toBeUndefined();
    const loaded = validateRunConfig(
      create(RunConfigSchema, { ...base, baseTraining: undefined, baseCheckpointId: "runs/x/base" }),
    );
    expect(loaded.baseTraining).toBeUndefined();
  });

  it("rejects bad values naming the field", () => {
    rejects({ dataset: "" }, "config.dataset");
    rejects({ dataset: "s3://bucket" }, "config.dataset");
    rejects({ dataset: "shapes://?pairs=10&size=32" }, "config.dataset");
    rejects({ dataset: "shapes://?pairs=10&size=16&colour=1" }, "config.dataset");
    rejects({ modelPreset: "huge" }, "config.model_preset");
    rejects({ iterations: 101 }, "config.iterations");
    rejects(
      { method: RunMethod.DPO_OFFLINE, iterations: 2, improverTraining: undefined },
      "config.iterations",
    );
    rejects({ pairsPerIteration: 1_000_001 }, "config.pairs_per_iteration");
    rejects({ shardSize: 4097 }, "config.shard_size");
    rejects({ samplingSteps: 1001 }, "config.sampling_steps");
    rejects({ guidanceScale: 31 }, "config.guidance_scale");
    rejects({ textGuidanceScale: -1 }, "config.text_guidance_scale");
    rejects({ imageGuidanceScale: Number.NaN }, "config.image_guidance_scale");
    rejects({ improveStrength: 0 }, "config.improve_strength");
    rejects({ improveStrength: 1.01 }, "config.improve_strength");
    rejects({ evalSamplesPerPrompt: 257 }, "config.eval_samples_per_prompt");
    rejects({ evalPrompts: ["ok", ""] }, "config.eval_prompts[1]");
    rejects(
      { evalPrompts: Array.from({ length: 17 }, (_, i) => `p${i}`), evalSamplesPerPrompt: 256 },
      "config.eval_prompts",
    );
    rejects({ policyTraining: { steps: 0 } }, "config.policy_training.steps");
    rejects({ policyTraining: undefined }, "config.policy_training");
    rejects({ baseTraining: { steps: 1, beta: 5 } }, "config.base_training.beta");
    rejects({ policyTraining: { steps: 10, learningRate: 0 } }, "config.policy_training.learning_rate");
    rejects(
      { improverTraining: { steps: 5, improveTaskProbability: 0.95, reconstructTaskProbability: 0.1 } },
      "config.improver_training.reconstruct_task_probability",
    );
    rejects(
      { method: RunMethod.SPIN, improverCheckpointId: "runs/x/improver" },
      "config.improver_checkpoint_id",
    );
    rejects({ baseCheckpointId: "../etc" }, "config.base_checkpoint_id");
    rejects({ dataset: "artifact://shards/" }, "config.train_prompts");
    rejects({ offlinePairsPerIteration: 101 }, "config.offline_pairs_per_iteration");
    rejects(
      { method: RunMethod.SPIN, improverTraining: undefined, offlinePairsPerIteration: 10 },
      "config.offline_pairs_per_iteration",
    );
    rejects(
      { dataset: "shapes://?pairs=100&size=16#take=50", offlinePairsPerIteration: 10 },
      "config.offline_pairs_per_iteration",
    );
  });

  it("mixes offline pairs only when asked, up to the dataset's size", () => {
    expect(validateRunConfig(create(RunConfigSchema, base)).offlinePairsPerIteration).toBe(0);
    const mixed = validateRunConfig(create(RunConfigSchema, { ...base, offlinePairsPerIteration: 100 }));
    expect(mixed.offlinePairsPerIteration).toBe(100);
  });
});
