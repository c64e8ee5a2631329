import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { JobKind, LrSchedule, type TrainingConfig, TrainingConfigSchema } from "@idpo/proto";
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

describe("the learning-rate schedule", () => {
  it("is constant unless set; a decaying one gets min_lr_ratio 0.1", () => {
    const constant = resolveTrainingConfig(cfg({ steps: 10 }), JobKind.SFT, "t");
    expect([constant.lrSchedule, constant.minLrRatio]).toEqual([LrSchedule.UNSPECIFIED, undefined]);
    for (const lrSchedule of [LrSchedule.COSINE, LrSchedule.LINEAR]) {
      const t = resolveTrainingConfig(
        cfg({ steps: 10, warmupSteps: 9, lrSchedule }),
        JobKind.DPO,
        "t",
        "used",
      );
      expect(t.minLrRatio).toBe(TRAINING_DEFAULTS.minLrRatio);
      expect(resolveTrainingConfig(t, JobKind.DPO, "t", "used")).toEqual(t);
    }
    const zero = resolveTrainingConfig(
      cfg({ steps: 10, lrSchedule: LrSchedule.LINEAR, minLrRatio: 0 }),
      JobKind.DPO,
      "t",
    );
    expect(zero.minLrRatio).toBe(0);
  });

  it("rejects what cannot run, naming the field", () => {
    const at = (init: Init) => rejection(() => resolveTrainingConfig(cfg(init), JobKind.DPO, "s.t"));
    expect(at({ steps: 5, lrSchedule: 7 as LrSchedule })).toMatch(/^s\.t\.lr_schedule: unknown schedule 7/);
    expect(at({ steps: 5, lrSchedule: LrSchedule.COSINE, minLrRatio: 1.5 })).toMatch(/^s\.t\.min_lr_ratio/);
    expect(at({ steps: 5, lrSchedule: LrSchedule.LINEAR, minLrRatio: -0.1 })).toMatch(/^s\.t\.min_lr_ratio/);
    expect(at({ steps: 5, minLrRatio: 0.5 })).toBe(
      "s.t.min_lr_ratio: only applies to the COSINE and LINEAR schedules",
    );
    expect(at({ steps: 5, lrSchedule: LrSchedule.CONSTANT, minLrRatio: 0.5 })).toMatch(/^s\.t\.min_lr_ratio/);
    expect(at({ steps: 5, warmupSteps: 5, lrSchedule: LrSchedule.COSINE })).toMatch(
      /^s\.t\.warmup_steps: 5 leaves no step to decay over/,
    );
    // A constant schedule may warm up over every step.
    expect(resolveTrainingConfig(cfg({ steps: 5, warmupSteps: 5 }), JobKind.DPO, "t").warmupSteps).toBe(5);
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
