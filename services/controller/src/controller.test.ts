import { createHash } from "node:crypto";
import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import { decodeReport, type TerminationReport } from "@idpo/bus";
import {
  type ControllerService,
  JobKind,
  type PairShardTask,
  PairShardTaskSchema,
  ReferencePolicy,
  type Run,
  type RunConfig,
  RunConfigSchema,
  type RunEvent,
  RunEventSchema,
  RunMethod,
  RunStage,
  RunState,
} from "@idpo/proto";
import { afterEach, describe, expect, it } from "vitest";
import { FakeMesh } from "./fake-mesh-fixture.js";
import { checkpointIds, jobIds, shardArtifact, shardKey } from "./run-plan.js";
import { RunStore } from "./run-store.js";

type Controller = Client<typeof ControllerService>;

type ConfigInit = Exclude<MessageInitShape<typeof RunConfigSchema>, RunConfig>;

function config(over: ConfigInit = {}): RunConfig {
  return create(RunConfigSchema, {
    dataset: "shapes://?pairs=64&size=16&seed=1",
    modelPreset: "tiny",
    baseTraining: { steps: 3 },
    improverTraining: { steps: 3 },
    policyTraining: { steps: 3 },
    iterations: 2,
    pairsPerIteration: 6,
    shardSize: 4,
    evalPrompts: ["a small red circle on a black background", "a large blue square on a white background"],
    evalSamplesPerPrompt: 2,
    seed: 7n,
    ...over,
  });
}

/** Follows WatchRun until the run ends (or `until` holds) and returns the last run seen plus every update. */
async function follow(c: Controller, runId: string, until?: (r: Run) => boolean) {
  const seen: Run[] = [];
  const ac = new AbortController();
  for await (const res of c.watchRun({ runId }, { signal: ac.signal, timeoutMs: 30_000 })) {
    seen.push(res.run!);
    if (until?.(res.run!)) {
      ac.abort();
      break;
    }
  }
  return { last: seen[seen.length - 1], seen };
}

/** Every stored event of `kind` for the run, in order (read with a fresh durable subscription). */
async function eventsOf(mesh: FakeMesh, runId: string, kind: string) {
  const out: RunEvent[] = [];
  const sub = await mesh.bus.events.subscribe(
    { consumer: `check-${Math.random().toString(36).slice(2)}`, filter: `idpo.events.${runId}.${kind}` },
    (msg) => {
      out.push(fromBinary(RunEventSchema, msg.data));
    },
  );
  await new Promise((r) => setTimeout(r, 200));
  await sub.stop();
  return out;
}

describe("controller", () => {
  let mesh: FakeMesh | undefined;
  afterEach(async () => {
    await mesh?.close();
    mesh = undefined;
  });

  it("drives an iterative DPO run to SUCCEEDED: base, improver, base evaluation, K × (pairs, DPO, evaluation)", async () => {
    mesh = await new FakeMesh().start();
    const { client } = await mesh.controller();
    const created = await client.createRun({ runId: "r1", config: config() });
    expect(created.run!.state).toBe(RunState.PENDING);
    expect(created.run!.config!.samplingSteps).toBe(20);
    const { last, seen } = await follow(client, "r1");
    expect(last.state, last.error).toBe(RunState.SUCCEEDED);
    expect(last.stage).toBe(RunStage.DONE);
    expect(last.baseCheckpoint!.id).toBe(checkpointIds.base("r1"));
    expect(last.improverCheckpoint!.id).toBe(checkpointIds.improver("r1"));
    expect(last.baseEvaluation!.reward!.n).toBe(4);
    expect(last.baseEvaluation!.winRateVsBase).toBeUndefined();
    expect(last.iterations.map((it) => it.index)).toEqual([1, 2]);
    for (const it of last.iterations) {
      expect(it.shardsTotal).toBe(2);
      expect(it.shardsDone).toBe(2);
      expect(it.pairs).toBe(6);
      expect(it.checkpoint!.id).toBe(checkpointIds.iteration("r1", it.index));
      expect(it.trainMetrics.loss).toBeCloseTo(1 / 3);
      expect(it.evaluation!.winRateVsBase).toBeGreaterThanOrEqual(0);
      expect(it.evaluation!.checkpointId).toBe(it.checkpoint!.id);
    }
    // Stages in order, as seen by a watcher.
    const stages: string[] = [];
    for (const r of seen) {
      const s = `${RunStage[r.stage]}${r.iteration ? r.iteration : ""}`;
      if (stages[stages.length - 1] !== s) stages.push(s);
    }
    expect(stages.filter((s) => s !== "UNSPECIFIED")).toEqual([
      "BASE",
      "IMPROVER",
      "EVALUATE",
      "GENERATE1",
      "TRAIN1",
      "EVALUATE1",
      "GENERATE2",
      "TRAIN2",
      "EVALUATE2",
      "DONE2",
    ]);
    // Jobs: pretrain, improver from base, DPO on the iteration's shards against the base, from the previous iterate.
    const specs = mesh.trainer.starts;
    expect(specs.map((s) => s.jobId)).toEqual([
      jobIds.base("r1"),
      jobIds.improver("r1"),
      jobIds.iteration("r1", 1),
      jobIds.iteration("r1", 2),
    ]);
    expect(specs[0].kind).toBe(JobKind.PRETRAIN);
    expect(specs[0].data).toEqual(["shapes://?pairs=64&size=16&seed=1"]);
    expect(specs[1].kind).toBe(JobKind.IMPROVER);
    expect(specs[1].initCheckpointId).toBe(checkpointIds.base("r1"));
    expect(specs[2].kind).toBe(JobKind.DPO);
    expect(specs[2].data).toEqual(["artifact://runs/r1/iter-1/"]);
    expect(specs[2].initCheckpointId).toBe(checkpointIds.base("r1"));
    expect(specs[2].referenceCheckpointId).toBe(checkpointIds.base("r1"));
    expect(specs[2].training!.beta).toBe(2000);
    expect(specs[3].initCheckpointId).toBe(checkpointIds.iteration("r1", 1));
    expect(specs[3].referenceCheckpointId).toBe(checkpointIds.base("r1"));
    expect(specs[3].iteration).toBe(2);
    expect(specs[2].training!.seed).not.toBe(specs[3].training!.seed);
    // Shards: each stored once; iteration 2's losers come from iteration 1's checkpoint.
    expect(mesh.generator.processed.sort()).toEqual(
      [
        shardArtifact("r1", 1, 0),
        shardArtifact("r1", 1, 1),
        shardArtifact("r1", 2, 0),
        shardArtifact("r1", 2, 1),
      ].sort(),
    );
    const t2 = mesh.generator.tasks.filter((t) => t.iteration === 2);
    expect(t2.every((t) => t.policyCheckpointId === checkpointIds.iteration("r1", 1))).toBe(true);
    expect(t2.every((t) => t.improverCheckpointId === checkpointIds.improver("r1"))).toBe(true);
    expect(mesh.generator.tasks.map((t) => t.prompts.length).sort()).toEqual([2, 2, 4, 4]);
    // run_state_changed events, one per transition.
    const states = await eventsOf(mesh, "r1", "run_state_changed");
    const names = states.map((e) => (e.payload.case === "runStateChanged" ? e.payload.value.state : ""));
    expect(names[0]).toBe("RUN_STATE_PENDING");
    expect(names[names.length - 1]).toBe("RUN_STATE_SUCCEEDED");
    expect(new Set(states.map((e) => e.eventId)).size).toBe(states.length);
  });

  it("counts a redelivered or re-published pairs_ready once", async () => {
    mesh = await new FakeMesh().start();
    const { client } = await mesh.controller();
    await client.createRun({ runId: "dup", config: config({ iterations: 1 }) });
    const { last } = await follow(client, "dup");
    expect(last.state, last.error).toBe(RunState.SUCCEEDED);
    // The same shard's event again, under a new msgId (so the bus stores it): still one record.
    const ev = create(RunEventSchema, {
      eventId: "dup/iter-1/pairs-ready/shard-0/again",
      runId: "dup",
      time: timestampNow(),
      payload: {
        case: "pairsReady",
        value: { iteration: 1, shardIndex: 0, artifact: shardArtifact("dup", 1, 0), pairCount: 4 },
      },
    });
    await mesh.bus.events.publish("idpo.events.dup.pairs_ready", toBinary(RunEventSchema, ev), {
      msgId: ev.eventId,
    });
    await new Promise((r) => setTimeout(r, 100));
    expect(await mesh.bus.state.keys("shards.dup.iter-1.")).toEqual([
      shardKey("dup", 1, 0),
      shardKey("dup", 1, 1),
    ]);
    const got = (await client.getRun({ runId: "dup" })).run!;
    expect(got.iterations).toHaveLength(1);
    expect(got.iterations[0].shardsDone).toBe(2);
  });

  it("a restarted controller resumes the run where it stopped, without regenerating stored shards", async () => {
    mesh = await new FakeMesh().start({ stepMs: 5 });
    const first = await mesh.controller();
    await first.client.createRun({ runId: "resume", config: config({ policyTraining: { steps: 40 } }) });
    // Stop the controller while iteration 1 trains.
    await follow(first.client, "resume", (r) => r.stage === RunStage.TRAIN && r.iteration === 1);
    await first.stop();
    const before = mesh.generator.processed.length;
    expect(before).toBe(2);
    const second = await mesh.controller();
    const { last } = await follow(second.client, "resume");
    expect(last.state, last.error).toBe(RunState.SUCCEEDED);
    expect(last.iterations).toHaveLength(2);
    // Iteration 1's shards were not generated again; only iteration 2's were added.
    expect(mesh.generator.processed.filter((a) => a.includes("/iter-1/"))).toHaveLength(2);
    expect(mesh.generator.processed).toHaveLength(4);
    // The iteration job was resubmitted under the same id (idempotent), never under a new one.
    const ids = new Set(mesh.trainer.starts.map((s) => s.jobId));
    expect([...ids].sort()).toEqual(
      [
        jobIds.base("resume"),
        jobIds.improver("resume"),
        jobIds.iteration("resume", 1),
        jobIds.iteration("resume", 2),
      ].sort(),
    );
    expect(mesh.trainer.jobs.size).toBe(4);
  });

  it("two controllers on one state store never both advance a run", async () => {
    mesh = await new FakeMesh().start();
    const a = await mesh.controller();
    const b = await mesh.controller();
    await a.client.createRun({ runId: "twin", config: config() });
    // The second controller is told about the same run too (CreateRun is idempotent): both drive it.
    await b.client.createRun({ runId: "twin", config: config() });
    const { last, seen } = await follow(b.client, "twin");
    expect(last.state, last.error).toBe(RunState.SUCCEEDED);
    expect(last.iterations.map((it) => it.index)).toEqual([1, 2]);
    // Every revision builds on the previous one: the iteration count never goes back.
    let prev = 0;
    for (const r of seen) {
      expect(r.iterations.length).toBeGreaterThanOrEqual(prev);
      prev = r.iterations.length;
    }
    expect(mesh.trainer.jobs.size).toBe(4);
  });

  it("fails the run with a clear error when a trainer job fails", async () => {
    mesh = await new FakeMesh().start();
    mesh.trainer.failing.add(jobIds.iteration("bad", 1));
    const { client } = await mesh.controller();
    await client.createRun({ runId: "bad", config: config() });
    const { last } = await follow(client, "bad");
    expect(last.state).toBe(RunState.FAILED);
    expect(last.error).toContain("trainer job bad-iter-1 failed: loss is NaN");
  });

  it("fails the run when a pair shard fails max_deliver times (shard_failed)", async () => {
    mesh = await new FakeMesh().start();
    mesh.generator.failing.add(shardArtifact("sf", 1, 1));
    const { client } = await mesh.controller();
    await client.createRun({ runId: "sf", config: config() });
    await follow(client, "sf", (r) => r.stage === RunStage.GENERATE);
    // The report names the task as the controller enqueued it (what consumeShards sends).
    let task: PairShardTask | undefined;
    while (!task) {
      task = mesh.generator.tasks.find((t) => t.outputArtifact === shardArtifact("sf", 1, 1));
      await new Promise((r) => setTimeout(r, 20));
    }
    const ev = create(RunEventSchema, {
      eventId: "sf/iter-1/shard-failed/shard-1",
      runId: "sf",
      time: timestampNow(),
      payload: {
        case: "shardFailed",
        value: {
          iteration: 1,
          shardIndex: 1,
          deliveries: 2,
          reason: "improver unavailable",
          policyCheckpointId: task.policyCheckpointId,
          taskSha256: createHash("sha256").update(toBinary(PairShardTaskSchema, task)).digest("hex"),
        },
      },
    });
    await mesh.bus.events.publish("idpo.events.sf.shard_failed", toBinary(RunEventSchema, ev), {
      msgId: ev.eventId,
    });
    const { last } = await follow(client, "sf");
    expect(last.state).toBe(RunState.FAILED);
    expect(last.error).toBe("iteration 1: pair shard 1 failed after 2 deliveries: improver unavailable");
  });

  it("cancels a run and its current trainer job", async () => {
    mesh = await new FakeMesh().start({ stepMs: 20 });
    const { client } = await mesh.controller();
    await client.createRun({ runId: "cx", config: config({ baseTraining: { steps: 500 } }) });
    await follow(client, "cx", (r) => r.stage === RunStage.BASE && (r.progress?.done ?? 0n) > 0n);
    const res = await client.cancelRun({ runId: "cx" });
    expect(res.run!.state).toBe(RunState.CANCELLED);
    expect(mesh.trainer.cancels).toEqual([jobIds.base("cx")]);
    const again = await client.cancelRun({ runId: "cx" });
    expect(again.run!.state).toBe(RunState.CANCELLED);
    await new Promise((r) => setTimeout(r, 50));
    expect(mesh.trainer.starts.map((s) => s.jobId)).toEqual([jobIds.base("cx")]);
  });

  it("runs SPIN with the previous iterate as reference and no pair shards", async () => {
    mesh = await new FakeMesh().start();
    const { client } = await mesh.controller();
    await client.createRun({
      runId: "spin",
      config: config({
        method: RunMethod.SPIN,
        improverTraining: undefined,
        reference: ReferencePolicy.BASE,
      }),
    });
    const { last } = await follow(client, "spin");
    expect(last.state, last.error).toBe(RunState.SUCCEEDED);
    expect(last.improverCheckpoint).toBeUndefined();
    const it2 = mesh.trainer.starts.find((s) => s.jobId === jobIds.iteration("spin", 2))!;
    expect(it2.kind).toBe(JobKind.SPIN);
    expect(it2.initCheckpointId).toBe(checkpointIds.iteration("spin", 1));
    expect(it2.referenceCheckpointId).toBe(checkpointIds.iteration("spin", 1));
    expect(mesh.generator.tasks).toHaveLength(0);
  });

  it("answers CreateRun idempotently and rejects bad requests naming the field", async () => {
    mesh = await new FakeMesh().start({ stepMs: 50 });
    const { client } = await mesh.controller();
    const a = await client.createRun({ runId: "idem", config: config({ baseTraining: { steps: 1000 } }) });
    const b = await client.createRun({ runId: "idem", config: config({ baseTraining: { steps: 1000 } }) });
    expect(b.run!.createTime).toEqual(a.run!.createTime);
    // A run stored before a field gained a default (improve_strength unset) still matches the same request.
    await new RunStore(mesh.bus.state).mutate("idem", (r) => {
      r.config!.improveStrength = undefined;
      return true;
    });
    const c = await client.createRun({ runId: "idem", config: config({ baseTraining: { steps: 1000 } }) });
    expect(c.run!.createTime).toEqual(a.run!.createTime);
    const reject = async (p: Promise<unknown>, code: Code, text: string) => {
      const err = await p.then(
        () => undefined,
        (e) => e,
      );
      expect(err).toBeInstanceOf(ConnectError);
      expect((err as ConnectError).code).toBe(code);
      expect((err as ConnectError).rawMessage).toContain(text);
    };
    await reject(
      client.createRun({ runId: "idem", config: config({ seed: 8n }) }),
      Code.AlreadyExists,
      "run_id",
    );
    await reject(client.createRun({ runId: "Bad_Id", config: config() }), Code.InvalidArgument, "run_id");
    await reject(
      client.createRun({ runId: "x", config: config({ dataset: "" }) }),
      Code.InvalidArgument,
      "config.dataset",
    );
    await reject(
      client.createRun({ runId: "x", config: config({ shardSize: 5000 }) }),
      Code.InvalidArgument,
      "config.shard_size",
    );
    await reject(
      client.createRun({ runId: "x", config: config({ policyTraining: { steps: 0 } }) }),
      Code.InvalidArgument,
      "config.policy_training.steps",
    );
    await reject(
      client.createRun({ runId: "x", config: config({ baseCheckpointId: "runs/none/base" }) }),
      Code.FailedPrecondition,
      "config.base_checkpoint_id",
    );
    await reject(client.getRun({ runId: "nope" }), Code.NotFound, "run_id");
    await reject(client.watchRun({ runId: "nope" })[Symbol.asyncIterator]().next(), Code.NotFound, "run_id");
    await reject(client.cancelRun({ runId: "nope" }), Code.NotFound, "run_id");
    await reject(client.listRuns({ pageToken: "garbage" }), Code.InvalidArgument, "page_token");
    await client.cancelRun({ runId: "idem" });
  });

  it("terminates and reports a malformed pairs_ready instead of crashing", async () => {
    mesh = await new FakeMesh().start();
    const { client } = await mesh.controller();
    await client.createRun({ runId: "mal", config: config({ iterations: 1 }) });
    const reports: TerminationReport[] = [];
    const sub = await mesh.bus.events.subscribe(
      { consumer: "check-reports", filter: "idpo.reports.events.controller" },
      (msg) => {
        reports.push(decodeReport(msg));
      },
    );
    await mesh.bus.events.publish("idpo.events.mal.pairs_ready", new Uint8Array([0xff, 0x01, 0x02]), {
      msgId: "junk-1",
    });
    const wrongArtifact = create(RunEventSchema, {
      eventId: "mal/iter-1/pairs-ready/0/forged",
      runId: "mal",
      payload: {
        case: "pairsReady",
        value: { iteration: 1, shardIndex: 0, artifact: "elsewhere.pairs", pairCount: 4 },
      },
    });
    await mesh.bus.events.publish("idpo.events.mal.pairs_ready", toBinary(RunEventSchema, wrongArtifact), {
      msgId: wrongArtifact.eventId,
    });
    const { last } = await follow(client, "mal");
    for (let i = 0; i < 50 && reports.length < 2; i++) await new Promise((r) => setTimeout(r, 50));
    await sub.stop();
    expect(last.state, last.error).toBe(RunState.SUCCEEDED);
    expect(reports.map((r) => r.reason)).toEqual(["malformed", "malformed"]);
    expect(reports[0].error).toContain("undecodable RunEvent");
    expect(reports[1].error).toContain('names artifact "elsewhere.pairs"');
  });

  it("lists runs newest first, page by page", async () => {
    mesh = await new FakeMesh().start({ stepMs: 50 });
    const { client } = await mesh.controller();
    for (const id of ["l1", "l2", "l3"]) {
      await client.createRun({ runId: id, config: config({ baseTraining: { steps: 1000 } }) });
      await new Promise((r) => setTimeout(r, 5));
    }
    const p1 = await client.listRuns({ pageSize: 2 });
    expect(p1.runs.map((r) => r.runId)).toEqual(["l3", "l2"]);
    const p2 = await client.listRuns({ pageSize: 2, pageToken: p1.nextPageToken });
    expect(p2.runs.map((r) => r.runId)).toEqual(["l1"]);
    expect(p2.nextPageToken).toBe("");
    for (const id of ["l1", "l2", "l3"]) await client.cancelRun({ runId: id });
  });
});
