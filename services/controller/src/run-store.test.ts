import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { type Bus, openBus, RevisionConflictError } from "@idpo/bus";
import { IterationSchema, ProgressSchema, RunSchema, RunStage, RunState } from "@idpo/proto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { runKey } from "./run-plan.js";
import { RunStore } from "./run-store.js";

describe("RunStore", () => {
  let dir: string;
  let bus: Bus;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "idpo-runstore-"));
    bus = await openBus({ backend: "embedded", dataDir: dir });
  });
  afterEach(async () => {
    await bus.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("creates once and returns the existing run on a second create", async () => {
    const store = new RunStore(bus.state);
    const a = await store.create(create(RunSchema, { runId: "r", state: RunState.PENDING }));
    const b = await store.create(create(RunSchema, { runId: "r", state: RunState.RUNNING }));
    expect(a.created).toBe(true);
    expect(b.created).toBe(false);
    expect(b.run.state).toBe(RunState.PENDING);
  });

  it("a write based on a stale revision is refused, so two writers cannot both advance a run", async () => {
    const store = new RunStore(bus.state);
    const { revision } = await store.create(create(RunSchema, { runId: "r", state: RunState.RUNNING }));
    const advanced = create(RunSchema, { runId: "r", iterations: [create(IterationSchema, { index: 1 })] });
    await bus.state.update(runKey("r"), toBinary(RunSchema, advanced), revision);
    // The second writer read the same revision: its compare-and-set fails.
    await expect(
      bus.state.update(runKey("r"), toBinary(RunSchema, advanced), revision),
    ).rejects.toBeInstanceOf(RevisionConflictError);
  });

  it("mutate re-applies a change to the winner's state after losing a compare-and-set", async () => {
    const store = new RunStore(bus.state);
    await store.create(create(RunSchema, { runId: "r", state: RunState.RUNNING }));
    // Both writers want to start iteration n+1 given what they read; run them concurrently many times.
    const startNext = (r: ReturnType<typeof create<typeof RunSchema>>) => {
      r.iterations.push(create(IterationSchema, { index: r.iterations.length + 1 }));
      return true;
    };
    const startFirst = (r: ReturnType<typeof create<typeof RunSchema>>) => {
      if (r.iterations.length !== 0) return false;
      r.iterations.push(create(IterationSchema, { index: 1 }));
      return true;
    };
    const results = await Promise.all([
      store.mutate("r", startFirst),
      store.mutate("r", startFirst),
      store.mutate("r", startNext),
      store.mutate("r", startNext),
    ]);
    const final = (await store.get("r"))!.run;
    // Exactly one "start the first iteration" applied; the two unconditional appends both applied on top.
    expect(results.filter((r, i) => i < 2 && r.changed)).toHaveLength(1);
    expect(final.iterations.map((it) => it.index)).toEqual([1, 2, 3]);
  });

  it("watch yields the current run, every change, and ends with a terminal state", async () => {
    const store = new RunStore(bus.state);
    await store.create(create(RunSchema, { runId: "w", state: RunState.PENDING }));
    const ac = new AbortController();
    const seen: RunState[] = [];
    const done = (async () => {
      for await (const r of store.watch("w", ac.signal)) seen.push(r.run.state);
    })();
    // A key that shares the prefix must not leak into the watch of "w".
    await store.create(create(RunSchema, { runId: "w2", state: RunState.FAILED }));
    await store.mutate("w", (r) => {
      r.state = RunState.RUNNING;
      return true;
    });
    await store.mutate("w", (r) => {
      r.state = RunState.SUCCEEDED;
      return true;
    });
    await done;
    expect(seen).toEqual([RunState.PENDING, RunState.RUNNING, RunState.SUCCEEDED]);
  });

  it("watch collapses a backlog of progress-only updates for a slow consumer, never a stage change", async () => {
    const store = new RunStore(bus.state);
    await store.create(create(RunSchema, { runId: "s", state: RunState.RUNNING, stage: RunStage.BASE }));
    const ac = new AbortController();
    const it = store.watch("s", ac.signal)[Symbol.asyncIterator]();
    const first = await it.next();
    expect(first.value?.run.stage).toBe(RunStage.BASE);
    // The consumer is busy while 40 progress writes, a stage change and 40 more land.
    const progress = (done: number) =>
      store.mutate("s", (r) => {
        r.progress = create(ProgressSchema, { done: BigInt(done), total: 100n });
        return true;
      });
    for (let i = 1; i <= 40; i++) await progress(i);
    await store.mutate("s", (r) => {
      r.stage = RunStage.IMPROVER;
      r.progress = create(ProgressSchema, { done: 0n, total: 100n });
      return true;
    });
    for (let i = 1; i <= 40; i++) await progress(i);
    await store.mutate("s", (r) => {
      r.state = RunState.SUCCEEDED;
      return true;
    });
    const seen: string[] = [];
    for (;;) {
      const r = await it.next();
      if (r.done) break;
      seen.push(
        `${RunStage[r.value.run.stage]}:${r.value.run.progress?.done ?? 0}:${RunState[r.value.run.state]}`,
      );
    }
    expect(seen).toEqual(["BASE:40:RUNNING", "IMPROVER:40:RUNNING", "IMPROVER:40:SUCCEEDED"]);
  });
});
