import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { learningRateAt, PRESET_NAMES, preset } from "@idpo/diffusion";
import { MODEL_PRESET_IMAGE_SIZES, MODEL_PRESETS } from "@idpo/mesh";
import { JobKind, type JobSpec, JobSpecSchema, LrSchedule } from "@idpo/proto";
import { describe, expect, it } from "vitest";
import { resolveSpec } from "./job-spec.js";

const SHAPES = "shapes://?pairs=8&size=16&seed=1";

type SpecInit = Exclude<MessageInitShape<typeof JobSpecSchema>, JobSpec>;

function spec(init: SpecInit = {}): JobSpec {
  const base: SpecInit = {
    jobId: "j1",
    kind: JobKind.DPO,
    data: [SHAPES],
    initCheckpointId: "runs/r/base",
    referenceCheckpointId: "runs/r/base",
    training: { steps: 10 },
  };
  return create(JobSpecSchema, { ...base, ...init });
}

function rejects(s: JobSpec): ConnectError {
  try {
    resolveSpec(s, () => "generated");
  } catch (e) {
    expect(e).toBeInstanceOf(ConnectError);
    expect((e as ConnectError).code).toBe(Code.InvalidArgument);
    return e as ConnectError;
  }
  throw new Error("resolveSpec accepted the spec");
}

describe("resolveSpec", () => {
  it("fills every documented default (DPO)", () => {
    const { spec: s, job } = resolveSpec(spec(), () => "x");
    const t = s.training!;
    expect(t.batchSize).toBe(16);
    expect(t.learningRate).toBeCloseTo(2e-5, 12);
    expect(t.maxGradNorm).toBe(1);
    expect(t.gradientAccumulation).toBe(1);
    expect(t.beta).toBe(2000);
    expect(t.sftWeight).toBe(0);
    expect(t.dpoPositiveLambda).toBe(0);
    expect(t.promptDropout).toBeCloseTo(0.1, 7);
    expect(t.improveTaskProbability).toBeCloseTo(0.8, 7);
    expect(t.reconstructTaskProbability).toBeCloseTo(0.1, 7);
    expect(t.warmupSteps).toBe(0);
    expect(t.weightDecay).toBe(0);
    expect(t.emaDecay).toBe(0);
    expect(s.outputCheckpointId).toBe("jobs/j1");
    expect(s.modelPreset).toBe("shapes16");
    // Resolved floats are the float32 values the stored spec round-trips to.
    expect(job.training.learningRate).toBe(Math.fround(2e-5));
    expect(job.data).toEqual([{ kind: "shapes", uri: SHAPES, pairs: 8, size: 16, seed: 1 }]);
  });

  it("uses 1e-3 for non-preference jobs, the init checkpoint as SPIN's reference, and generates ids", () => {
    const pre = resolveSpec(
      spec({ jobId: "", kind: JobKind.PRETRAIN, initCheckpointId: "", referenceCheckpointId: "" }),
      () => "job-abc",
    );
    expect(pre.spec.jobId).toBe("job-abc");
    expect(pre.spec.outputCheckpointId).toBe("jobs/job-abc");
    expect(pre.spec.training!.learningRate).toBeCloseTo(1e-3, 9);
    const spin = resolveSpec(spec({ kind: JobKind.SPIN, referenceCheckpointId: "" }), () => "x");
    expect(spin.spec.referenceCheckpointId).toBe("runs/r/base");
    expect(spin.spec.training!.learningRate).toBeCloseTo(2e-5, 12);
  });

  it("carries SPIN sampler settings when given and validates them", () => {
    expect(resolveSpec(spec({ kind: JobKind.SPIN }), () => "x").job.spinSampler).toEqual({});
    const { job } = resolveSpec(
      spec({ kind: JobKind.SPIN, samplingSteps: 8, guidanceScale: 2.5 }),
      () => "x",
    );
    expect(job.spinSampler).toEqual({ steps: 8, guidanceScale: 2.5 });
    expect(rejects(spec({ samplingSteps: 5000 })).rawMessage).toMatch(
      /spec.sampling_steps: 5000 is outside \[0, 1000\]/,
    );
    expect(rejects(spec({ guidanceScale: 31 })).rawMessage).toMatch(
      /spec.guidance_scale: 31 is outside \[0, 30\]/,
    );
  });

  it("turns the learning-rate schedule into the diffusion library's, with the float32 peak", () => {
    expect(resolveSpec(spec(), () => "x").job.training.schedule).toEqual({
      lr: Math.fround(2e-5),
      warmupSteps: 0,
      kind: "constant",
    });
    const { job } = resolveSpec(
      spec({
        training: {
          steps: 6,
          learningRate: 0.5,
          warmupSteps: 2,
          lrSchedule: LrSchedule.LINEAR,
          minLrRatio: 0.2,
        },
      }),
      () => "x",
    );
    expect(job.training.schedule).toEqual({
      lr: 0.5,
      warmupSteps: 2,
      kind: "linear",
      totalSteps: 6,
      minLr: 0.5 * Math.fround(0.2),
    });
    // Warmup 0.25, 0.5; then from the peak 0.5 down to 0.1 over steps 2..6: 0.5, 0.4, 0.3, 0.2.
    const lrs = [0, 1, 2, 3, 4, 5].map((k) => learningRateAt(job.training.schedule, k));
    for (const [k, lr] of [0.25, 0.5, 0.5, 0.4, 0.3, 0.2].entries())
      expect(lrs[k], `step ${k}`).toBeCloseTo(lr, 6);
    const cosine = resolveSpec(spec({ training: { steps: 4, lrSchedule: LrSchedule.COSINE } }), () => "x");
    expect(cosine.spec.training!.minLrRatio).toBeCloseTo(0.1, 7);
    expect(cosine.job.training.schedule).toMatchObject({ kind: "cosine", totalSteps: 4 });
  });

  it("carries the RPO and DPO-Positive weights to the preference loss", () => {
    const { job } = resolveSpec(
      spec({ training: { steps: 3, sftWeight: 0.5, dpoPositiveLambda: 20 } }),
      () => "x",
    );
    expect(job.training.sftWeight).toBe(0.5);
    expect(job.training.dpoPositiveLambda).toBe(20);
  });

  it("is stable when applied to its own output (resume reads the stored spec)", () => {
    const once = resolveSpec(spec({ training: { steps: 3, learningRate: 0.3, beta: 123.4 } }), () => "x");
    const twice = resolveSpec(once.spec, () => "y");
    expect(twice.job).toEqual(once.job);
  });

  it("names the field of every invalid value", () => {
    expect(rejects(spec({ kind: JobKind.UNSPECIFIED })).message).toMatch(/spec\.kind: required/);
    expect(rejects(spec({ training: { steps: 0 } })).message).toMatch(/spec\.training\.steps/);
    expect(rejects(spec({ training: { steps: 1_000_001 } })).message).toMatch(/spec\.training\.steps/);
    expect(rejects(spec({ training: { steps: 5, batchSize: 5000 } })).message).toMatch(
      /spec\.training\.batch_size/,
    );
    expect(rejects(spec({ training: { steps: 5, learningRate: 0 } })).message).toMatch(
      /spec\.training\.learning_rate/,
    );
    expect(rejects(spec({ training: { steps: 5, emaDecay: 1 } })).message).toMatch(
      /spec\.training\.ema_decay/,
    );
    expect(rejects(spec({ training: { steps: 5, beta: 0 } })).message).toMatch(/spec\.training\.beta/);
    expect(rejects(spec({ training: { steps: 5, sftWeight: -0.5 } })).message).toMatch(
      /spec\.training\.sft_weight/,
    );
    expect(rejects(spec({ training: { steps: 5, dpoPositiveLambda: 2e4 } })).message).toMatch(
      /spec\.training\.dpo_positive_lambda/,
    );
    expect(rejects(spec({ training: { steps: 5, batchSize: 6, gradientAccumulation: 4 } })).message).toMatch(
      /spec\.training\.gradient_accumulation/,
    );
    expect(
      rejects(spec({ training: { steps: 5, improveTaskProbability: 0.7, reconstructTaskProbability: 0.5 } }))
        .message,
    ).toMatch(/spec\.training\.reconstruct_task_probability/);
    expect(rejects(spec({ training: { steps: 5, seed: 2n ** 60n } })).message).toMatch(
      /spec\.training\.seed/,
    );
    expect(rejects(spec({ data: [] })).message).toMatch(/spec\.data: at least one/);
    expect(rejects(spec({ data: [SHAPES, "http://x"] })).message).toMatch(/spec\.data\[1\]: unsupported/);
    expect(rejects(spec({ data: ["shapes://?pairs=0&size=16"] })).message).toMatch(
      /spec\.data\[0\]: pairs=0/,
    );
    expect(rejects(spec({ data: ["file://relative"] })).message).toMatch(/spec\.data\[0\]/);
    expect(rejects(spec({ initCheckpointId: "" })).message).toMatch(
      /spec\.init_checkpoint_id: required for DPO/,
    );
    expect(rejects(spec({ kind: JobKind.SFT, initCheckpointId: "" })).message).toMatch(
      /spec\.init_checkpoint_id/,
    );
    expect(rejects(spec({ referenceCheckpointId: "" })).message).toMatch(
      /spec\.reference_checkpoint_id: required for DPO/,
    );
    expect(rejects(spec({ kind: JobKind.SFT })).message).toMatch(
      /spec\.reference_checkpoint_id: only DPO and SPIN/,
    );
    expect(rejects(spec({ modelPreset: "huge" })).message).toMatch(
      /spec\.model_preset: unknown preset "huge"/,
    );
    expect(rejects(spec({ jobId: "Bad Id" })).message).toMatch(/spec\.job_id/);
    expect(rejects(spec({ runId: "a.b" })).message).toMatch(/spec\.run_id/);
    expect(rejects(spec({ outputCheckpointId: "runs/r/base" })).message).toMatch(
      /spec\.output_checkpoint_id/,
    );
    expect(rejects(spec({ outputCheckpointId: "x@y" })).message).toMatch(/spec\.output_checkpoint_id/);
  });
});

describe("MODEL_PRESET_IMAGE_SIZES", () => {
  it("names every diffusion preset with its image size", () => {
    expect([...MODEL_PRESETS].sort()).toEqual([...PRESET_NAMES].sort());
    for (const name of MODEL_PRESETS)
      expect(MODEL_PRESET_IMAGE_SIZES[name], name).toBe(preset(name).unet.imageSize);
  });
});
