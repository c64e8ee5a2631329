/**
 * Acceptance of the mesh (issue 5): the five services as separate processes on real gRPC ports, sharing the
 * suite's nats-server, drive a tiny iterative DPO run to the end; the second test crashes the generator
 * (SIGKILL) in the middle of an iteration and restarts it.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { join } from "node:path";
import { type Bus, openBus } from "@idpo/bus";
import { progressLine } from "@idpo/cli";
import { type Run, RunStage, RunState } from "@idpo/proto";
import { afterEach, describe, expect, inject, it } from "vitest";
import { type MeshProcesses, startMeshProcesses } from "./support/mesh.js";
import { pairsReady, runEvents } from "./support/mesh-bus.js";

const K = 2;
const SHARDS = 4;
const SHARD_SIZE = 4;
const EVAL_PROMPTS = [
  "a small red circle on a black background",
  "a large yellow square on a navy background",
  "a medium cyan triangle on a gray background",
];
const EVAL_SAMPLES = 2;

/** A run sized for CI: the loop and every service path, not model quality. */
function tinyConfig() {
  return {
    name: "e2e",
    dataset: "shapes://?pairs=128&size=16&seed=1",
    modelPreset: "tiny",
    baseTraining: { steps: 20, batchSize: 8 },
    improverTraining: { steps: 20, batchSize: 8 },
    policyTraining: { steps: 6, batchSize: 8 },
    iterations: K,
    pairsPerIteration: SHARDS * SHARD_SIZE,
    shardSize: SHARD_SIZE,
    samplingSteps: 4,
    evalPrompts: EVAL_PROMPTS,
    evalSamplesPerPrompt: EVAL_SAMPLES,
    seed: 3n,
  };
}

/** Environment that shortens the controller's waits (the defaults suit production). */
const MESH_ENV = {
  IDPO_CONTROLLER_LOAD_WAIT_MS: "2000",
  IDPO_CONTROLLER_PROGRESS_MS: "250",
  IDPO_TRAINER_PROGRESS_EVERY: "2",
};

/** Follows WatchRun until the run ends; `onUpdate` sees every update. */
async function follow(
  mesh: MeshProcesses,
  runId: string,
  onUpdate?: (r: Run) => Promise<void> | void,
): Promise<Run> {
  const client = mesh.controller();
  const progress = createWriteStream(join(mesh.dir, "progress.log"), { flags: "a" });
  let last: Run | undefined;
  // The stream can break when a service restarts; GetRun tells where the run is, and the watch resumes.
  for (let attempt = 0; attempt < 20; attempt++) {
    try {
      for await (const res of client.watchRun({ runId })) {
        last = res.run!;
        progress.write(`${new Date().toISOString()} ${progressLine(last)}\n`);
        await onUpdate?.(last);
      }
      if (
        last &&
        (last.state === RunState.SUCCEEDED ||
          last.state === RunState.FAILED ||
          last.state === RunState.CANCELLED)
      ) {
        return last;
      }
    } catch {
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  throw new Error(`run ${runId} did not end; last seen ${last ? RunState[last.state] : "nothing"}`);
}

/** The assertions both tests share: K iterations, every shard stored once, new checkpoints served, metrics. */
async function checkRun(mesh: MeshProcesses, bus: Bus, run: Run): Promise<void> {
  const runId = run.runId;
  expect(run.state, `${run.error}\n${mesh.logTail("controller")}`).toBe(RunState.SUCCEEDED);
  expect(run.stage).toBe(RunStage.DONE);
  expect(run.iterations.map((it) => it.index)).toEqual([1, 2]);

  // Every shard's pairs are stored, once, under the name the controller planned.
  for (let k = 1; k <= K; k++) {
    const names = (await bus.artifacts.list(`runs/${runId}/iter-${k}/`))
      .map((a) => a.name)
      .filter((n) => n.endsWith(".pairs"));
    expect(names).toEqual(
      Array.from({ length: SHARDS }, (_, i) => `runs/${runId}/iter-${k}/shard-${i}.pairs`).sort(),
    );
    const it = run.iterations[k - 1];
    expect(it.shardsDone).toBe(SHARDS);
    expect(it.pairs).toBe(SHARDS * SHARD_SIZE);
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

  // One pairs_ready per shard index; iteration k's losers come from iteration k-1's checkpoint (base for k = 1).
  const ready = pairsReady(await runEvents(bus, runId, "pairs_ready"));
  for (let k = 1; k <= K; k++) {
    const of = ready.filter((p) => p.iteration === k);
    expect(of.map((p) => p.shardIndex).sort()).toEqual(Array.from({ length: SHARDS }, (_, i) => i));
    const expected = k === 1 ? run.baseCheckpoint!.id : run.iterations[k - 2].checkpoint!.id;
    for (const p of of) expect(p.policyCheckpointId).toBe(expected);
  }

  // Evaluation metrics exist for the base model and every iteration, on the same prompts and seeds.
  const n = EVAL_PROMPTS.length * EVAL_SAMPLES;
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
  expect(new Set(labels)).toEqual(new Set(["base/0", "policy/1", "policy/2"]));
}

describe("the mesh end to end (separate processes, real NATS)", () => {
  let mesh: MeshProcesses | undefined;
  let bus: Bus | undefined;
  afterEach(async (ctx) => {
    await bus?.close({ timeoutMs: 1000 });
    bus = undefined;
    // A failed test keeps the services' logs (and the run's progress log) for inspection.
    const failed = ctx.task.result?.state === "fail";
    if (failed && mesh) process.stderr.write(`e2e: logs kept in ${mesh.dir}\n`);
    await mesh?.close(failed);
    mesh = undefined;
  });

  async function start(serviceEnv: Parameters<typeof startMeshProcesses>[0]["serviceEnv"] = {}) {
    const busPrefix = `e2e${randomBytes(4).toString("hex")}`;
    mesh = await startMeshProcesses({ natsUrl: inject("natsUrl"), busPrefix, env: MESH_ENV, serviceEnv });
    bus = await openBus({ backend: "nats", natsUrl: inject("natsUrl"), namePrefix: busPrefix });
    return { mesh, bus };
  }

  it("drives an iterative DPO run to SUCCEEDED after K iterations", { timeout: 420_000 }, async () => {
    const { mesh, bus } = await start();
    const created = await mesh.controller().createRun({ runId: "e2e-run", config: tinyConfig() });
    expect(created.run!.state).toBe(RunState.PENDING);
    const run = await follow(mesh, "e2e-run");
    await checkRun(mesh, bus, run);
    // The CLI client against the real controller.
    const cli = (...args: string[]) =>
      execFileSync(
        process.execPath,
        [join(import.meta.dirname, "../cli/bin/idpo.js"), "run", ...args, "--addr", mesh.url("controller")],
        {
          encoding: "utf8",
        },
      );
    expect(cli("list")).toMatch(/^e2e-run\s+\S+\s+succeeded/m);
    const shown = cli("get", "e2e-run");
    expect(shown).toContain("run e2e-run (e2e): succeeded");
    expect(shown).toMatch(/iteration 2\s+0\.\d{4} ± 0\.\d{4}/);
    expect(JSON.parse(cli("get", "e2e-run", "--json")).iterations).toHaveLength(K);
  });

  it("survives a generator killed mid-iteration and restarted, losing and duplicating no shard", {
    timeout: 480_000,
  }, async () => {
    const { mesh, bus } = await start();
    await mesh.controller().createRun({ runId: "e2e-crash", config: tinyConfig() });
    let killedAt: { iteration: number; shardsDone: number } | undefined;
    const run = await follow(mesh, "e2e-crash", async (r) => {
      const it = r.iterations[r.iteration - 1];
      if (killedAt || r.stage !== RunStage.GENERATE || !it) return;
      // Mid-iteration: the shards are queued and the generator is working on them.
      killedAt = { iteration: r.iteration, shardsDone: it.shardsDone };
      await mesh.kill("generator", "SIGKILL");
      await new Promise((res) => setTimeout(res, 1000));
      await mesh.start("generator");
    });
    expect(killedAt, "the generator was never killed during pair generation").toBeDefined();
    expect(killedAt!.shardsDone).toBeLessThan(SHARDS);
    await checkRun(mesh, bus, run);
  });

  it("samples through the inference sidecar process and survives it killed mid-iteration and restarted", {
    timeout: 480_000,
  }, async () => {
    const sidecar = { IDPO_INFERENCE: "sidecar" };
    const { mesh, bus } = await start({ generator: sidecar, improver: sidecar });
    await mesh.controller().createRun({ runId: "e2e-sidecar", config: tinyConfig() });
    let killedAt: { iteration: number; shardsDone: number } | undefined;
    const run = await follow(mesh, "e2e-sidecar", async (r) => {
      const it = r.iterations[r.iteration - 1];
      if (killedAt || r.stage !== RunStage.GENERATE || !it) return;
      killedAt = { iteration: r.iteration, shardsDone: it.shardsDone };
      await mesh.kill("inference", "SIGKILL");
      await new Promise((res) => setTimeout(res, 1000));
      await mesh.start("inference");
    });
    expect(killedAt, "the sidecar was never killed during pair generation").toBeDefined();
    await checkRun(mesh, bus, run);
    // Both services sampled through the sidecar, which loaded their checkpoints again after the restart.
    expect(mesh.logTail("inference", 10_000_000)).toMatch(/"inference model current"/);
    expect(mesh.logTail("generator", 10_000_000)).toMatch(/"engine":"sidecar http/);
    expect(mesh.logTail("improver", 10_000_000)).toMatch(/"engine":"sidecar http/);
  });
});
