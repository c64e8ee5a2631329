import { create } from "@bufbuild/protobuf";
import { RunMethod, RunSchema, RunStage, RunState } from "@idpo/proto";
import { describe, expect, it } from "vitest";
import { timeline } from "./timeline.js";

const ref = (id: string) => ({ id });
const reward = { mean: 0.5, ci95Low: 0.45, ci95High: 0.55, n: 8 };

describe("timeline", () => {
  it("marks an iterative run's finished stages done, the current one active and the rest pending", () => {
    const run = create(RunSchema, {
      config: { method: RunMethod.ITERATIVE_DPO, iterations: 2 },
      state: RunState.RUNNING,
      stage: RunStage.TRAIN,
      iteration: 1,
      baseCheckpoint: ref("runs/r/base"),
      improverCheckpoint: ref("runs/r/improver"),
      baseEvaluation: { reward },
      iterations: [{ index: 1, shardsDone: 2, shardsTotal: 2, pairs: 32 }],
      progress: { message: "iteration 1: running, step 5/20" },
    });
    const steps = timeline(run);
    expect(steps.map((s) => `${s.key}:${s.status}`)).toEqual([
      "base:done",
      "improver:done",
      "eval-0:done",
      "generate-1:done",
      "train-1:active",
      "eval-1:pending",
      "generate-2:pending",
      "train-2:pending",
      "eval-2:pending",
    ]);
    expect(steps[2].detail).toBe("reward 0.500 [0.450, 0.550]");
    expect(steps[3].detail).toBe("2/2 shards, 32 pairs");
    expect(steps[4].detail).toBe("iteration 1: running, step 5/20");
  });

  it("has no improver or pair stages for SPIN, and shows where a failed run stopped and why", () => {
    const run = create(RunSchema, {
      config: { method: RunMethod.SPIN, iterations: 1 },
      state: RunState.FAILED,
      error: "iteration 1: trainer job failed",
      baseCheckpoint: ref("b"),
      baseEvaluation: { reward },
      iterations: [{ index: 1 }],
    });
    const steps = timeline(run);
    expect(steps.map((s) => `${s.key}:${s.status}`)).toEqual([
      "base:done",
      "eval-0:done",
      "train-1:stopped",
      "eval-1:pending",
    ]);
    expect(steps[2].label).toBe("iteration 1: SPIN");
    expect(steps[2].detail).toBe("iteration 1: trainer job failed");
  });
});
