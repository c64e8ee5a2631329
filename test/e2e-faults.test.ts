/**
 * The fault suite: one tiny iterative DPO run on the mesh (five service processes) and a nats-server of its
 * own, through every fault a production bus and mesh see. NATS is killed (SIGKILL) and restarted during
 * base training, improver training, pair generation, DPO training and evaluation; the scorer, controller and trainer are killed once each
 * mid-stage and restarted; a poisoned shard task and a forged pairs_ready name the run; the improver is down
 * for 30 s during pair generation. The run must succeed with every iteration once, every shard stored once,
 * and no job redone from scratch where a checkpoint of it existed.
 */
import { randomBytes } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { type Bus, decodeReport, openBus, type TerminationReport } from "@idpo/bus";
import { PairShardTaskSchema, type Run, RunEventSchema, RunStage } from "@idpo/proto";
import { afterEach, describe, expect, it } from "vitest";
import { type MeshProcesses, type MeshServiceName, startMeshProcesses } from "./support/mesh.js";
import { checkMeshRun, followRun, jobsRedoneFromScratch, type RunPlan } from "./support/mesh-run.js";
import { startTestNats, type TestNats } from "./support/nats.js";

const EVAL_PROMPTS = [
  "a small red circle on a black background",
  "a large yellow square on a navy background",
];
const PLAN: RunPlan = {
  iterations: 2,
  shards: 3,
  shardSize: 2,
  evalPrompts: EVAL_PROMPTS,
  evalSamplesPerPrompt: 2,
  foreignEventIds: ["faults/forged-pairs-ready"],
};
/** How long the improver stays down: five times what used to exhaust a shard's deliveries. */
const IMPROVER_DOWN_MS = 30_000;
/** How long NATS stays down each time. */
const NATS_DOWN_MS = 3_000;

function faultConfig() {
  return {
    name: "faults",
    dataset: "shapes://?pairs=64&size=16&seed=1",
    modelPreset: "tiny",
    baseTraining: { steps: 12, batchSize: 4, checkpointEvery: 4 },
    improverTraining: { steps: 12, batchSize: 4, checkpointEvery: 4 },
    policyTraining: { steps: 8, batchSize: 4, checkpointEvery: 2 },
    iterations: PLAN.iterations,
    pairsPerIteration: PLAN.shards * PLAN.shardSize,
    shardSize: PLAN.shardSize,
    samplingSteps: 3,
    evalPrompts: EVAL_PROMPTS,
    evalSamplesPerPrompt: PLAN.evalSamplesPerPrompt,
    seed: 11n,
  };
}

/** A fault fired once, on the first run update it applies to. */
interface Fault {
  name: string;
  when: (r: Run) => boolean;
  /** Runs without holding up the watch; the test awaits it before its checks. */
  act: () => Promise<void>;
  fired?: Promise<void>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const at = (stage: RunStage, iteration: number) => (r: Run) => r.stage === stage && r.iteration === iteration;

describe("the mesh through faults (separate processes, its own NATS)", () => {
  let nats: TestNats | undefined;
  let mesh: MeshProcesses | undefined;
  let bus: Bus | undefined;
  afterEach(async (ctx) => {
    await bus?.close({ timeoutMs: 1000 });
    // A failed run keeps the services' logs (and its progress log) for inspection.
    const failed = ctx.task.result?.state === "fail";
    if (failed && mesh) process.stderr.write(`e2e-faults: logs kept in ${mesh.dir}\n`);
    await mesh?.close(failed);
    await nats?.stop();
  });

  it("succeeds through NATS restarts, killed services, poisoned shards and a 30 s improver outage", {
    timeout: 900_000,
  }, async () => {
    nats = await startTestNats();
    const busPrefix = `faults${randomBytes(3).toString("hex")}`;
    const m = await startMeshProcesses({
      natsUrl: nats.url,
      busPrefix,
      env: {
        IDPO_CONTROLLER_LOAD_WAIT_MS: "2000",
        IDPO_CONTROLLER_PROGRESS_MS: "250",
        // A controller killed mid-run is replaced within seconds: its lease on the run must expire as fast.
        IDPO_CONTROLLER_LEASE_SECONDS: "2",
        IDPO_TRAINER_PROGRESS_EVERY: "1",
      },
    });
    mesh = m;
    const b = await openBus({ backend: "nats", natsUrl: nats.url, namePrefix: busPrefix });
    bus = b;
    const reports: TerminationReport[] = [];
    const audit = await b.events.subscribe(
      { consumer: "faults-audit", filter: "idpo.reports.>" },
      (msg) => void reports.push(decodeReport(msg)),
    );
    const server = nats;
    const restartNats = async () => {
      await server.kill();
      await sleep(NATS_DOWN_MS);
      await server.restart();
    };
    const bounce = (svc: MeshServiceName, downMs: number) => async () => {
      await m.kill(svc, "SIGKILL");
      await sleep(downMs);
      await m.start(svc);
    };
    const poison = async () => {
      // A task naming the live run that its plan never had (iteration 3, shard 5, no prompts)...
      const task = create(PairShardTaskSchema, {
        runId: "faults",
        iteration: 3,
        shardIndex: 5,
        policyCheckpointId: "runs/faults/base",
        outputArtifact: "runs/faults/iter-3/shard-5.pairs",
      });
      await b.work.enqueue(toBinary(PairShardTaskSchema, task), { msgId: "poison-task" });
      // ...and a pairs_ready for a planned shard whose pairs were never stored.
      const forged = create(RunEventSchema, {
        eventId: "faults/forged-pairs-ready",
        runId: "faults",
        time: timestampNow(),
        payload: {
          case: "pairsReady",
          value: {
            iteration: 1,
            shardIndex: PLAN.shards - 1,
            artifact: `runs/faults/iter-1/shard-${PLAN.shards - 1}.pairs`,
            pairCount: PLAN.shardSize,
            policyCheckpointId: "runs/faults/base",
          },
        },
      });
      await b.events.publish("idpo.events.faults.pairs_ready", toBinary(RunEventSchema, forged), {
        msgId: forged.eventId,
      });
    };
    const faults: Fault[] = [
      { name: "NATS restart in base training", when: at(RunStage.BASE, 0), act: restartNats },
      { name: "NATS restart in improver training", when: at(RunStage.IMPROVER, 0), act: restartNats },
      {
        name: "scorer killed in base evaluation",
        when: at(RunStage.EVALUATE, 0),
        act: bounce("scorer", 1000),
      },
      { name: "poisoned task and report", when: at(RunStage.GENERATE, 1), act: poison },
      {
        name: "improver down 30 s in pair generation",
        when: at(RunStage.GENERATE, 1),
        act: bounce("improver", IMPROVER_DOWN_MS),
      },
      {
        name: "NATS restart in DPO training",
        when: (r) => at(RunStage.TRAIN, 1)(r) && (r.progress?.done ?? 0n) >= 2n,
        act: restartNats,
      },
      { name: "NATS restart in evaluation", when: at(RunStage.EVALUATE, 1), act: restartNats },
      { name: "NATS restart in pair generation", when: at(RunStage.GENERATE, 2), act: restartNats },
      {
        name: "controller killed in pair generation",
        when: at(RunStage.GENERATE, 2),
        act: bounce("controller", 1000),
      },
      {
        name: "trainer killed in DPO training after a checkpoint",
        when: (r) => at(RunStage.TRAIN, 2)(r) && (r.progress?.done ?? 0n) >= 3n,
        act: bounce("trainer", 1000),
      },
    ];
    let busy: Promise<void> = Promise.resolve();
    await m.controller().createRun({ runId: "faults", config: faultConfig() });
    const run = await followRun(m, "faults", (r) => {
      for (const f of faults) {
        if (f.fired || !f.when(r)) continue;
        // One fault at a time: a NATS restart and a service bounce never overlap.
        f.fired = busy.then(f.act);
        busy = f.fired.catch(() => undefined);
      }
    });
    await Promise.all(faults.map((f) => f.fired));
    expect(faults.filter((f) => !f.fired).map((f) => f.name)).toEqual([]);
    await checkMeshRun(m, b, run, PLAN);
    expect(jobsRedoneFromScratch(m.logTail("trainer", 10_000_000))).toEqual([]);
    // The poison was dropped and reported: the task terminated as malformed, its shard_failed and the
    // forged pairs_ready dropped by the controller.
    await sleep(1000);
    await audit.stop();
    expect(reports.some((r) => r.source === "work" && r.reason === "malformed")).toBe(true);
    const dropped = reports.filter((r) => r.source === "events").map((r) => r.error);
    expect(dropped.some((e) => /not a shard the run planned/.test(e))).toBe(true);
    expect(dropped.some((e) => /forged-pairs-ready.*is not stored/.test(e))).toBe(true);
  });
});
