import { create } from "@bufbuild/protobuf";
import { RunSchema, RunStage, RunState } from "@idpo/proto";
import { describe, expect, it } from "vitest";
import { filterRuns, formatDuration, runRow } from "./run-row.js";

const t = (seconds: number, nanos = 0) => ({ seconds: BigInt(seconds), nanos });

describe("runRow", () => {
  it("shows a running run's stage, iteration, stage progress and time so far", () => {
    const run = create(RunSchema, {
      runId: "r1",
      config: { name: "demo", iterations: 3 },
      state: RunState.RUNNING,
      stage: RunStage.TRAIN,
      iteration: 2,
      progress: { done: 15n, total: 40n },
      createTime: t(1000, 500_000_000),
      updateTime: t(1010),
    });
    expect(runRow(run, 1_100_500)).toEqual({
      runId: "r1",
      name: "demo",
      state: "running",
      stage: "train",
      iteration: "2/3",
      progress: 0.375,
      startedMs: 1_000_500,
      durationSeconds: 100,
    });
  });

  it("measures an ended run to its last change and shows no stage or progress without a total", () => {
    const run = create(RunSchema, {
      runId: "r2",
      config: { iterations: 1 },
      state: RunState.SUCCEEDED,
      stage: RunStage.DONE,
      iteration: 1,
      createTime: t(1000),
      updateTime: t(1075),
    });
    const row = runRow(run, 9_999_999);
    expect(row.stage).toBe("");
    expect(row.progress).toBeUndefined();
    expect(row.durationSeconds).toBe(75);
  });
});

describe("filterRuns and formatDuration", () => {
  it("filters by state and keeps the order", () => {
    const runs = [RunState.RUNNING, RunState.FAILED, RunState.RUNNING].map((state, i) =>
      create(RunSchema, { runId: `r${i}`, state }),
    );
    expect(filterRuns(runs, "running").map((r) => r.runId)).toEqual(["r0", "r2"]);
    expect(filterRuns(runs, "failed").map((r) => r.runId)).toEqual(["r1"]);
    expect(filterRuns(runs, "all")).toHaveLength(3);
    expect(filterRuns(runs, "cancelled")).toHaveLength(0);
  });

  it("formats seconds, minutes and hours", () => {
    expect(formatDuration(44.6)).toBe("45 s");
    expect(formatDuration(725)).toBe("12 min 5 s");
    expect(formatDuration(12_000)).toBe("3 h 20 min");
  });
});
