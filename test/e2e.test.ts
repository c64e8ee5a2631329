/**
 * Acceptance of the mesh (issue 5): the five services as separate processes on real gRPC ports, sharing the
 * suite's nats-server, drive a tiny iterative DPO run to the end; the second test crashes the generator
 * (SIGKILL) in the middle of an iteration and restarts it.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { type Bus, openBus } from "@idpo/bus";
import { RunStage, RunState } from "@idpo/proto";
import { afterEach, describe, expect, inject, it } from "vitest";
import { type MeshProcesses, startMeshProcesses } from "./support/mesh.js";
import { checkMeshRun, followRun, type RunPlan } from "./support/mesh-run.js";

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
  // A controller killed mid-run is replaced within seconds: its lease on the run must expire as fast.
  IDPO_CONTROLLER_LEASE_SECONDS: "2",
  IDPO_TRAINER_PROGRESS_EVERY: "2",
};

/** What the runs are checked against. */
const PLAN: RunPlan = {
  iterations: K,
  shards: SHARDS,
  shardSize: SHARD_SIZE,
  evalPrompts: EVAL_PROMPTS,
  evalSamplesPerPrompt: EVAL_SAMPLES,
};

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
    const run = await followRun(mesh, "e2e-run");
    await checkMeshRun(mesh, bus, run, PLAN);
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
    const run = await followRun(mesh, "e2e-crash", async (r) => {
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
    await checkMeshRun(mesh, bus, run, PLAN);
  });

  it("samples through the inference sidecar process and survives it killed mid-iteration and restarted", {
    timeout: 480_000,
  }, async () => {
    const sidecar = { IDPO_INFERENCE: "sidecar" };
    const { mesh, bus } = await start({ generator: sidecar, improver: sidecar });
    await mesh.controller().createRun({ runId: "e2e-sidecar", config: tinyConfig() });
    let killedAt: { iteration: number; shardsDone: number } | undefined;
    const run = await followRun(mesh, "e2e-sidecar", async (r) => {
      const it = r.iterations[r.iteration - 1];
      if (killedAt || r.stage !== RunStage.GENERATE || !it) return;
      killedAt = { iteration: r.iteration, shardsDone: it.shardsDone };
      await mesh.kill("inference", "SIGKILL");
      await new Promise((res) => setTimeout(res, 1000));
      await mesh.start("inference");
    });
    expect(killedAt, "the sidecar was never killed during pair generation").toBeDefined();
    await checkMeshRun(mesh, bus, run, PLAN);
    // Both services sampled through the sidecar, which loaded their checkpoints again after the restart.
    expect(mesh.logTail("inference", 10_000_000)).toMatch(/"inference model current"/);
    expect(mesh.logTail("generator", 10_000_000)).toMatch(/"engine":"sidecar http/);
    expect(mesh.logTail("improver", 10_000_000)).toMatch(/"engine":"sidecar http/);
  });
});
