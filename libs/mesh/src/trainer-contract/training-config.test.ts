import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { JobKind, type TrainingConfig, TrainingConfigSchema } from "@idpo/proto";
import { describe, expect, it } from "vitest";
import { rejectUnusedSettings } from "./job-kinds.js";
import { resolveTrainingConfig, TRAINING_DEFAULTS } from "./training-config.js";

type Init = Exclude<MessageInitShape<typeof TrainingConfigSchema>, TrainingConfig>;

function cfg(init: Init): TrainingConfig {
  return create(TrainingConfigSchema, init);
}

function rejection(run: () => unknown): string {
  try {
    run();
  } catch (e) {
    expect(e).toBeInstanceOf(ConnectError);
    expect((e as ConnectError).code).toBe(Code.InvalidArgument);
    return (e as ConnectError).rawMessage;
  }
  throw new Error("accepted");
}

describe("resolveTrainingConfig", () => {
  it("fills every documented default, the learning rate by kind", () => {
    const dpo = resolveTrainingConfig(cfg({ steps: 10 }), JobKind.DPO, "t");
    expect(dpo.batchSize).toBe(16);
    expect(dpo.gradientAccumulation).toBe(1);
    expect(dpo.learningRate).toBe(2e-5);
    expect(dpo.maxGradNorm).toBe(1);
    expect(dpo.beta).toBe(2000);
    expect(dpo.promptDropout).toBe(0.1);
    expect(dpo.improveTaskProbability).toBe(0.8);
    expect(dpo.reconstructTaskProbability).toBe(0.1);
    expect(resolveTrainingConfig(cfg({ steps: 10 }), JobKind.SPIN, "t").learningRate).toBe(2e-5);
    for (const kind of [JobKind.PRETRAIN, JobKind.IMPROVER, JobKind.SFT]) {
      expect(resolveTrainingConfig(cfg({ steps: 10 }), kind, "t").learningRate).toBe(1e-3);
    }
  });

  it('fills only what the kind reads with "used"', () => {
    const pre = resolveTrainingConfig(cfg({ steps: 10 }), JobKind.PRETRAIN, "t", "used");
    expect(pre.promptDropout).toBe(TRAINING_DEFAULTS.promptDropout);
    expect(pre.beta).toBeUndefined();
    expect(pre.improveTaskProbability).toBeUndefined();
    const imp = resolveTrainingConfig(cfg({ steps: 10 }), JobKind.IMPROVER, "t", "used");
    expect([imp.improveTaskProbability, imp.reconstructTaskProbability, imp.beta]).toEqual([
      0.8,
      0.1,
      undefined,
    ]);
    const dpo = resolveTrainingConfig(cfg({ steps: 10 }), JobKind.DPO, "t", "used");
    expect([dpo.beta, dpo.promptDropout]).toEqual([2000, undefined]);
  });

  it("keeps given values and does not modify its input", () => {
    const input = cfg({ steps: 8, batchSize: 12, gradientAccumulation: 3, learningRate: 0.5, beta: 7 });
    const out = resolveTrainingConfig(input, JobKind.DPO, "t");
    expect([out.batchSize, out.gradientAccumulation, out.learningRate, out.beta]).toEqual([12, 3, 0.5, 7]);
    expect(input.maxGradNorm).toBeUndefined();
  });

  it("rejects every out-of-contract value naming the field", () => {
    const at = (init: Init, kind = JobKind.DPO) =>
      rejection(() => resolveTrainingConfig(cfg(init), kind, "s.t"));
    expect(rejection(() => resolveTrainingConfig(undefined, JobKind.DPO, "s.t"))).toMatch(/^s\.t: required/);
    expect(at({ steps: 0 })).toMatch(/^s\.t\.steps: 0 is outside \[1, 1000000\]/);
    expect(at({ steps: 1_000_001 })).toMatch(/^s\.t\.steps/);
    expect(at({ steps: 5, batchSize: 4097 })).toMatch(/^s\.t\.batch_size/);
    expect(at({ steps: 5, batchSize: 16, gradientAccumulation: 3 })).toMatch(
      /^s\.t\.gradient_accumulation: 3 does not divide s\.t\.batch_size 16/,
    );
    expect(at({ steps: 5, learningRate: 0 })).toMatch(/^s\.t\.learning_rate: 0 is outside \(0, 1\]/);
    expect(at({ steps: 5, learningRate: 1.5 })).toMatch(/^s\.t\.learning_rate/);
    expect(at({ steps: 5, weightDecay: -0.1 })).toMatch(/^s\.t\.weight_decay/);
    expect(at({ steps: 5, maxGradNorm: 2e6 })).toMatch(/^s\.t\.max_grad_norm/);
    expect(at({ steps: 5, emaDecay: 1 })).toMatch(/^s\.t\.ema_decay: 1 is outside \[0, 1\)/);
    expect(at({ steps: 5, beta: 0 })).toMatch(/^s\.t\.beta: 0 is outside \(0, 1000000\]/);
    expect(at({ steps: 5, promptDropout: 1.5 })).toMatch(/^s\.t\.prompt_dropout/);
    expect(at({ steps: 5, improveTaskProbability: 0.7, reconstructTaskProbability: 0.5 })).toMatch(
      /^s\.t\.reconstruct_task_probability: improve \(0\.7\) \+ reconstruct \(0\.5\)/,
    );
    expect(at({ steps: 5, seed: 2n ** 60n })).toMatch(/^s\.t\.seed/);
    expect(at({ steps: 5, warmupSteps: 6 })).toMatch(/^s\.t\.warmup_steps: 6 is more than steps \(5\)/);
    expect(at({ steps: 5, checkpointEvery: 6 })).toMatch(/^s\.t\.checkpoint_every/);
    // A setting the kind does not read is still range-checked.
    expect(at({ steps: 5, promptDropout: 2 }, JobKind.DPO)).toMatch(/^s\.t\.prompt_dropout/);
  });
});

describe("rejectUnusedSettings", () => {
  it("names the first objective setting the kind ignores", () => {
    const run = (init: Init, kind: JobKind) => () => rejectUnusedSettings(cfg(init), kind, "c.base");
    expect(rejection(run({ steps: 1, beta: 5 }, JobKind.PRETRAIN))).toBe(
      "c.base.beta: only applies to DPO and SPIN training",
    );
    expect(rejection(run({ steps: 1, promptDropout: 0.2 }, JobKind.DPO))).toMatch(/^c\.base\.prompt_dropout/);
    expect(rejection(run({ steps: 1, reconstructTaskProbability: 0.2 }, JobKind.SFT))).toMatch(
      /^c\.base\.reconstruct_task_probability/,
    );
    expect(() => run({ steps: 1, beta: 5 }, JobKind.SPIN)()).not.toThrow();
    expect(() => run({ steps: 1, improveTaskProbability: 0.5 }, JobKind.IMPROVER)()).not.toThrow();
  });
});
