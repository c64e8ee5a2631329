/** Following a run on a mesh of service processes, and what every end-to-end run must have left behind. */
import { createWriteStream } from "node:fs";
import { join } from "node:path";
import type { Bus } from "@idpo/bus";
import { followRun as followControllerRun, progressLine } from "@idpo/local-mesh";
import { type Run, RunStage, RunState, runStateEnded } from "@idpo/proto";
import { expect } from "vitest";
import type { MeshProcesses } from "./mesh.js";
import { pairsReady, runEvents } from "./mesh-bus.js";

/**
 * Follows WatchRun until the run ends; `onUpdate` sees every update (awaited, so keep it short). The stream
 * breaks when the controller or NATS restarts: the watch is opened again, up to `attempts` times.
 */
export async function followRun(
  mesh: MeshProcesses,
  runId: string,
  onUpdate?: (r: Run) => Promise<void> | void,
  attempts = 60,
): Promise<Run> {
  const progress = createWriteStream(join(mesh.dir, "progress.log"), { flags: "a" });
  let last: Run | undefined;
  try {
    last = await followControllerRun(mesh.controller(), runId, {
      attempts,
      retryDelayMs: 1000,
      retryOn: (err) => {
        progress.write(`${new Date().toISOString()} watch broke: ${(err as Error).message}\n`);
        return true;
      },
      onUpdate: async (run) => {
        progress.write(`${new Date().toISOString()} ${progressLine(run)}\n`);
        await onUpdate?.(run);
      },
    });
  } finally {
    progress.end();
  }
  if (last && runStateEnded(last.state)) return last;
  throw new Error(`run ${runId} did not end; last seen ${last ? RunState[last.state] : "nothing"}`);
}

/** What a run was asked for, to check its results against. */
export interface RunPlan {
  iterations: number;
  shards: number;
  shardSize: number;
  evalPrompts: readonly string[];
  evalSamplesPerPrompt: number;
  /** Ids of events the test itself published on the run's subjects (forged ones), left out of the checks. */
  foreignEventIds?: readonly string[];
}

/**
 * The assertions every iterative DPO run on the mesh must pass: SUCCEEDED with every iteration once, every
 * shard stored once under its planned name and recorded once, iteration k's losers from iteration k−1's
 * checkpoint, evaluations of the base model and every iteration on the same prompts and seeds.
 */
export async function checkMeshRun(mesh: MeshProcesses, bus: Bus, run: Run, plan: RunPlan): Promise<void> {
  const runId = run.runId;
  const K = plan.iterations;
  const SHARDS = plan.shards;
  expect(run.state, `${run.error}\n${mesh.logTail("controller")}`).toBe(RunState.SUCCEEDED);
  expect(run.stage).toBe(RunStage.DONE);
  expect(run.iterations.map((it) => it.index)).toEqual(Array.from({ length: K }, (_, i) => i + 1));

  for (let k = 1; k <= K; k++) {
    const names = (await bus.artifacts.list(`runs/${runId}/iter-${k}/`))
      .map((a) => a.name)
      .filter((n) => n.endsWith(".pairs"));
    expect(names).toEqual(
      Array.from({ length: SHARDS }, (_, i) => `runs/${runId}/iter-${k}/shard-${i}.pairs`).sort(),
    );
    const it = run.iterations[k - 1];
    expect(it.shardsDone).toBe(SHARDS);
    expect(it.pairs).toBe(SHARDS * plan.shardSize);
    expect(await bus.state.keys(`shards.${runId}.iter-${k}.`)).toHaveLength(SHARDS);
  }
  // A shard is sampled and stored once; a redelivery after a crash finds it stored and only re-announces it.
  const generatorLog = mesh.logTail("generator", 10_000_000);
  for (let k = 1; k <= K; k++) {
    for (let i = 0; i < SHARDS; i++) {
      const artifact = `runs/${runId}/iter-${k}/shard-${i}.pairs`;
      const stored = generatorLog
        .split("\n")
        .filter((l) => l.includes('"pair shard stored"') && l.includes(`"${artifact}"`)).length;
      expect(stored, artifact).toBeLessThanOrEqual(1);
    }
  }

  const foreign = new Set(plan.foreignEventIds ?? []);
  const ready = pairsReady(
    (await runEvents(bus, runId, "pairs_ready")).filter((e) => !foreign.has(e.eventId)),
  );
  for (let k = 1; k <= K; k++) {
    const of = ready.filter((p) => p.iteration === k);
    expect(of.map((p) => p.shardIndex).sort()).toEqual(Array.from({ length: SHARDS }, (_, i) => i));
    const expected = k === 1 ? run.baseCheckpoint!.id : run.iterations[k - 2].checkpoint!.id;
    for (const p of of) expect(p.policyCheckpointId).toBe(expected);
  }

  const n = plan.evalPrompts.length * plan.evalSamplesPerPrompt;
  expect(run.baseEvaluation!.reward!.n).toBe(n);
  for (const it of run.iterations) {
    expect(it.checkpoint!.id).toBe(`runs/${runId}/iter-${it.index}/policy`);
    expect(it.trainMetrics.loss).toBeTypeOf("number");
    expect(it.evaluation!.reward!.n).toBe(n);
    expect(it.evaluation!.reward!.mean).toBeGreaterThanOrEqual(0);
    expect(it.evaluation!.winRateVsBase).toBeTypeOf("number");
    expect(it.evaluation!.checkpointId).toBe(it.checkpoint!.id);
  }
  const evals = await runEvents(bus, runId, "eval_completed", 300);
  const labels = evals.map((e) =>
    e.payload.case === "evalCompleted" ? `${e.payload.value.label}/${e.payload.value.iteration}` : "",
  );
  expect(new Set(labels)).toEqual(
    new Set(["base/0", ...Array.from({ length: K }, (_, i) => `policy/${i + 1}`)]),
  );
}

/**
 * Trainer jobs started from step 0 more than once although a checkpoint of theirs existed when they were
 * started again (read from the trainer's log: "job started" with fromStep, "checkpoint published").
 */
export function jobsRedoneFromScratch(trainerLog: string): string[] {
  const checkpointed = new Set<string>();
  const started = new Set<string>();
  const redone: string[] = [];
  for (const line of trainerLog.split("\n")) {
    let entry: { msg?: string; jobId?: string; fromStep?: number; isFinal?: boolean };
    try {
      entry = JSON.parse(line);
    } catch {
      continue;
    }
    if (!entry.jobId) continue;
    if (entry.msg === "checkpoint published" && entry.isFinal === false) checkpointed.add(entry.jobId);
    if (entry.msg === "job started") {
      if (entry.fromStep === 0 && started.has(entry.jobId) && checkpointed.has(entry.jobId)) {
        redone.push(entry.jobId);
      }
      started.add(entry.jobId);
    }
  }
  return redone;
}
