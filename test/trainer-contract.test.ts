/**
 * The Controller and the Trainer read one trainer contract: every RunConfig that CreateRun accepts must turn
 * into trainer jobs that StartJob's validation accepts, or a run would fail at a late stage after hours of
 * work. Checked over a generated sweep of edge values of every field that reaches a job.
 */
import { clone, create, type MessageInitShape } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import { checkpointIds, iterationPrefix, jobIds, policyJobKind, validateRunConfig } from "@idpo/controller";
import { DataRng } from "@idpo/data";
import {
  JobKind,
  type JobSpec,
  JobSpecSchema,
  LrSchedule,
  type RunConfig,
  RunConfigSchema,
  RunMethod,
  type TrainingConfig,
  TrainingConfigSchema,
} from "@idpo/proto";
import { resolveSpec } from "@idpo/trainer";
import { describe, expect, it } from "vitest";

type ConfigInit = Exclude<MessageInitShape<typeof RunConfigSchema>, RunConfig>;
type TrainingInit = Exclude<
  MessageInitShape<typeof RunConfigSchema>["baseTraining"],
  TrainingConfig | undefined
>;

const RUN_ID = "drift";
const VALID_TRAINING: TrainingInit = { steps: 10 };
const VALID: ConfigInit = {
  dataset: "shapes://?pairs=100&size=16&seed=3",
  baseTraining: VALID_TRAINING,
  improverTraining: VALID_TRAINING,
  policyTraining: VALID_TRAINING,
};

const METHODS = [RunMethod.ITERATIVE_DPO, RunMethod.DPO_OFFLINE, RunMethod.SFT, RunMethod.SPIN];
const STAGES = ["baseTraining", "improverTraining", "policyTraining"] as const;

/** Edge values of each TrainingConfig field: inside, on and just past every documented limit. */
const TRAINING_EDGES: Record<string, readonly unknown[]> = {
  steps: [0, 1, 16, 1_000_000, 1_000_001],
  batchSize: [0, 1, 6, 16, 4096, 4097],
  learningRate: [undefined, 0, 1e-9, 1, 1.0001, Number.NaN],
  warmupSteps: [0, 10, 11, 1_000_001],
  weightDecay: [0, 1, 1.5, -0.1],
  maxGradNorm: [undefined, 0, 1e6, 1e7],
  gradientAccumulation: [0, 1, 3, 4, 16, 4096, 4097],
  emaDecay: [0, 0.999, 1, -0.5],
  beta: [undefined, 1e-6, 1e6, 2e6, 0],
  promptDropout: [undefined, 0, 1, 1.5],
  improveTaskProbability: [undefined, 0, 0.9, 1, 1.2],
  reconstructTaskProbability: [undefined, 0, 0.1, 0.2, 1],
  seed: [0n, BigInt(Number.MAX_SAFE_INTEGER), BigInt(Number.MAX_SAFE_INTEGER) + 1n],
  checkpointEvery: [0, 5, 10, 11],
  lrSchedule: [LrSchedule.UNSPECIFIED, LrSchedule.CONSTANT, LrSchedule.COSINE, LrSchedule.LINEAR, 9],
  minLrRatio: [undefined, 0, 0.1, 1, 1.5],
};
const STEPS = TRAINING_EDGES.steps as number[];
/** Fields whose limits depend on each other: every pair of their edges is tried. */
const COUPLED: [string, string][] = [
  ["batchSize", "gradientAccumulation"],
  ["warmupSteps", "lrSchedule"],
  ["lrSchedule", "minLrRatio"],
  ["improveTaskProbability", "reconstructTaskProbability"],
];

/** Edge values of the RunConfig fields a trainer job reads directly. */
const CONFIG_EDGES: Record<string, readonly unknown[]> = {
  dataset: [
    "shapes://?pairs=1&size=16",
    "shapes://?pairs=1000000&size=16&seed=4294967295",
    "shapes://?pairs=1000001&size=16",
    "shapes://?pairs=5000000&size=16",
    "shapes://?pairs=10&size=16&seed=4294967296",
    "shapes://?pairs=10&size=16&seed=-1",
    "shapes://?size=16",
    "shapes://host?pairs=10&size=16",
    "file:///data/pairs",
    "file:///",
    "file://host/data",
    "file:///a%ZZ",
    "artifact://runs/x/",
    "artifact://runs/x y/",
    "artifact://a/../b",
  ],
  modelPreset: ["", "tiny", "shapes16", "shapes32", "huge"],
  baseCheckpointId: ["", "runs/x/base", "a@step-3", "../x", "jobs/a b"],
  startCheckpointId: ["", "runs/x/iter-2/policy", "x".repeat(200)],
  improverCheckpointId: ["", "runs/x/improver"],
};

/** The generated sweep: every edge alone in every stage and method, then seeded random combinations. */
function* sweep(): Generator<ConfigInit> {
  for (const method of METHODS) {
    for (const stage of STAGES) {
      for (const [field, values] of Object.entries(TRAINING_EDGES)) {
        for (const v of values) yield { ...VALID, method, [stage]: { ...VALID_TRAINING, [field]: v } };
      }
      for (const [a, b] of COUPLED) {
        for (const va of TRAINING_EDGES[a]) {
          for (const vb of TRAINING_EDGES[b])
            yield { ...VALID, method, [stage]: { steps: 10, [a]: va, [b]: vb } };
        }
      }
    }
    for (const [field, values] of Object.entries(CONFIG_EDGES)) {
      for (const v of values) yield { ...VALID, method, [field]: v };
    }
  }
  const rng = new DataRng(20240607);
  const pick = <T>(xs: readonly T[]): T => xs[rng.int(xs.length)];
  for (let i = 0; i < 400; i++) {
    const training = (): TrainingInit => {
      const t: Record<string, unknown> = { steps: pick(STEPS) };
      for (const [field, values] of Object.entries(TRAINING_EDGES)) {
        if (field !== "steps" && values.length > 0 && rng.next() < 0.3) t[field] = pick(values);
      }
      return t as TrainingInit;
    };
    const c: ConfigInit = { ...VALID, method: pick(METHODS) };
    for (const stage of STAGES) c[stage] = training();
    for (const [field, values] of Object.entries(CONFIG_EDGES)) {
      if (rng.next() < 0.2) (c as Record<string, unknown>)[field] = pick(values);
    }
    yield c;
  }
}

/** The trainer jobs a run of `c` submits, as the Controller's run driver builds them. */
function jobSpecsOf(c: RunConfig): JobSpec[] {
  const base = c.baseCheckpointId || checkpointIds.base(RUN_ID);
  // The run driver gives every job a seed derived from the run's seed: a uint32.
  const withSeed = (t: TrainingConfig | undefined) => {
    const out = clone(TrainingConfigSchema, t!);
    out.seed = 4294967295n;
    return out;
  };
  const specs: JobSpec[] = [];
  if (c.baseCheckpointId === "") {
    specs.push(
      create(JobSpecSchema, {
        jobId: jobIds.base(RUN_ID),
        runId: RUN_ID,
        kind: JobKind.PRETRAIN,
        data: [c.dataset],
        modelPreset: c.modelPreset,
        training: withSeed(c.baseTraining),
        outputCheckpointId: base,
      }),
    );
  }
  if (c.method === RunMethod.ITERATIVE_DPO && c.improverCheckpointId === "") {
    specs.push(
      create(JobSpecSchema, {
        jobId: jobIds.improver(RUN_ID),
        runId: RUN_ID,
        kind: JobKind.IMPROVER,
        data: [c.dataset],
        initCheckpointId: base,
        modelPreset: c.modelPreset,
        training: withSeed(c.improverTraining),
        outputCheckpointId: checkpointIds.improver(RUN_ID),
      }),
    );
  }
  const kind = policyJobKind(c.method);
  for (let k = 1; k <= c.iterations; k++) {
    const init = k === 1 ? c.startCheckpointId || base : checkpointIds.iteration(RUN_ID, k - 1);
    specs.push(
      create(JobSpecSchema, {
        jobId: jobIds.iteration(RUN_ID, k),
        runId: RUN_ID,
        kind,
        data: [c.method === RunMethod.ITERATIVE_DPO ? `artifact://${iterationPrefix(RUN_ID, k)}` : c.dataset],
        initCheckpointId: init,
        referenceCheckpointId: kind === JobKind.SPIN ? init : kind === JobKind.DPO ? base : "",
        modelPreset: c.modelPreset,
        training: withSeed(c.policyTraining),
        outputCheckpointId: checkpointIds.iteration(RUN_ID, k),
        iteration: k,
      }),
    );
  }
  return specs;
}

describe("the trainer contract", () => {
  it("every config CreateRun accepts becomes jobs the Trainer accepts", () => {
    let accepted = 0;
    let rejected = 0;
    const problems: string[] = [];
    const show = (init: ConfigInit) => JSON.stringify(init, (_, v) => (typeof v === "bigint" ? `${v}n` : v));
    for (const init of sweep()) {
      let config: RunConfig;
      try {
        config = validateRunConfig(create(RunConfigSchema, init));
      } catch (e) {
        const named = e instanceof ConnectError && /^config\.[a-z_.]+(\[\d+\])?: /.test(e.rawMessage);
        if (!named) problems.push(`CreateRun threw ${e} for ${show(init)}`);
        rejected++;
        continue;
      }
      accepted++;
      for (const spec of jobSpecsOf(config)) {
        try {
          resolveSpec(spec, () => "unused");
        } catch (e) {
          problems.push(`CreateRun accepted ${show(init)}\n  but the trainer rejects its job: ${e}`);
        }
      }
    }
    expect(problems.slice(0, 8)).toEqual([]);
    // The sweep covers both sides of the contract.
    expect(accepted).toBeGreaterThan(200);
    expect(rejected).toBeGreaterThan(200);
  });

  it("CreateRun rejects at once, naming the field, what the trainer rejected at iteration 1", () => {
    const rejects = (init: ConfigInit, field: string) =>
      expect(() => validateRunConfig(create(RunConfigSchema, { ...VALID, ...init }))).toThrow(
        new RegExp(`^\\[invalid_argument\\] ${field.replace(/[.[\]]/g, "\\$&")}: `),
      );
    rejects({ dataset: "shapes://?pairs=5000000&size=16" }, "config.dataset");
    rejects(
      { policyTraining: { steps: 10, batchSize: 16, gradientAccumulation: 3 } },
      "config.policy_training.gradient_accumulation",
    );
    rejects({ policyTraining: { steps: 10, promptDropout: 1.5 } }, "config.policy_training.prompt_dropout");
  });
});
