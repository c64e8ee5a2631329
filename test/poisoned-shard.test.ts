/**
 * Poisoned shard traffic on a real nats-server: tasks and reports that name a live run but do not match
 * its plan (another iteration, an unplanned shard index, empty prompts, another policy, a shard that was
 * never stored) are dropped and reported, and the run goes on; the failure of a shard the run did plan
 * still fails it.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import {
  type Bus,
  consumeShards,
  decodeReport,
  openBus,
  type Subscription,
  type TerminationReport,
} from "@idpo/bus";
import { pairShardMeta } from "@idpo/mesh";
import {
  IterationSchema,
  PairShardTaskSchema,
  RunConfigSchema,
  RunEventSchema,
  RunSchema,
  RunStage,
  RunState,
} from "@idpo/proto";
import { createLogger } from "@idpo/runtime";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { validateRunConfig } from "../services/controller/src/index.js";
import { planShards, shardKey } from "../services/controller/src/run-plan.js";
import { RunStore } from "../services/controller/src/run-store.js";
import { subscribeShardEvents } from "../services/controller/src/shard-events.js";
import { startTestNats, type TestNats } from "./support/nats.js";

const PROMPTS = ["a small red circle on a black background", "a large blue square on a white background"];

/** A run of 2 iterations × 2 shards of 2 pairs, in iteration 1's pair generation. */
function generatingRun(runId: string) {
  const config = validateRunConfig(
    create(RunConfigSchema, {
      dataset: "shapes://?pairs=16&size=16&seed=1",
      modelPreset: "tiny",
      baseTraining: { steps: 2 },
      improverTraining: { steps: 2 },
      policyTraining: { steps: 2 },
      evalPrompts: PROMPTS,
      iterations: 2,
      pairsPerIteration: 4,
      shardSize: 2,
      trainPrompts: PROMPTS,
      seed: 9n,
    }),
  );
  return create(RunSchema, {
    runId,
    config,
    state: RunState.RUNNING,
    stage: RunStage.GENERATE,
    iteration: 1,
    baseCheckpoint: { id: `runs/${runId}/base` },
    improverCheckpoint: { id: `runs/${runId}/improver` },
    iterations: [create(IterationSchema, { index: 1, shardsTotal: 2 })],
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("poisoned shard tasks and reports", () => {
  let nats: TestNats;
  let bus: Bus;
  let store: RunStore;
  const subs: Subscription[] = [];
  const reports: TerminationReport[] = [];

  beforeAll(async () => {
    nats = await startTestNats();
    bus = await openBus({
      backend: "nats",
      natsUrl: nats.url,
      namePrefix: "poison",
      limits: { workMaxDeliver: 2, backoffMs: [100], workAckWaitMs: 5_000 },
    });
    store = new RunStore(bus.state);
    const logger = createLogger("error", {}, () => {});
    subs.push(...(await subscribeShardEvents(bus, store, logger)));
    subs.push(
      await bus.events.subscribe(
        { consumer: "poison-audit", filter: "idpo.reports.>" },
        (m) => void reports.push(decodeReport(m)),
      ),
    );
    // A shard worker as the generator runs it: a malformed task is terminated at once, a failing one after
    // its deliveries; both publish shard_failed for the run they name. This one fails every task.
    subs.push(
      await consumeShards(bus, () => {
        throw new Error("policy checkpoint not found");
      }),
    );
  });
  afterAll(async () => {
    await Promise.all(subs.map((s) => s.stop({ timeoutMs: 0 })));
    await bus?.close({ timeoutMs: 0 });
    await nats?.stop();
  });

  it("drops a stray task and a forged pairs_ready naming a live run, which goes on", {
    timeout: 60_000,
  }, async () => {
    await store.create(generatingRun("live"));
    const stray = (init: Parameters<typeof create<typeof PairShardTaskSchema>>[1]) =>
      bus.work.enqueue(
        toBinary(PairShardTaskSchema, create(PairShardTaskSchema, { runId: "live", ...init })),
        {
          msgId: `stray-${init?.iteration}-${init?.shardIndex}-${init?.policyCheckpointId}`,
        },
      );
    // Never planned: iteration 3, shard 5, no prompts (malformed, terminated on its first delivery).
    await stray({
      iteration: 3,
      shardIndex: 5,
      policyCheckpointId: "runs/live/base",
      outputArtifact: "runs/live/iter-3/shard-5.pairs",
    });
    // Planned coordinates, but another policy and prompts: it fails its deliveries.
    await stray({
      iteration: 1,
      shardIndex: 0,
      shardCount: 2,
      prompts: ["a green triangle"],
      seeds: [1n],
      policyCheckpointId: "runs/other/base",
      outputArtifact: "runs/live/iter-1/shard-0.pairs",
    });
    // A pairs_ready for a planned shard whose pairs were never stored.
    const forged = create(RunEventSchema, {
      eventId: "live/iter-1/pairs-ready/1",
      runId: "live",
      time: timestampNow(),
      payload: {
        case: "pairsReady",
        value: {
          iteration: 1,
          shardIndex: 1,
          artifact: "runs/live/iter-1/shard-1.pairs",
          pairCount: 2,
          policyCheckpointId: "runs/live/base",
        },
      },
    });
    await bus.events.publish("idpo.events.live.pairs_ready", toBinary(RunEventSchema, forged), {
      msgId: forged.eventId,
    });
    // Both tasks terminated, their shard_failed reports and the forged pairs_ready dropped and reported.
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && reports.filter((r) => r.source === "events").length < 3) await sleep(100);
    const work = reports.filter((r) => r.source === "work").map((r) => r.reason);
    expect(work.sort()).toEqual(["malformed", "max-deliver"]);
    const dropped = reports.filter((r) => r.source === "events");
    expect(dropped.map((r) => r.reason)).toEqual(["malformed", "malformed", "malformed"]);
    expect(dropped.map((r) => r.error).join("\n")).toMatch(
      /not a shard the run planned: the run is at iteration 1/,
    );
    expect(dropped.map((r) => r.error).join("\n")).toMatch(/differs from the planned one/);
    expect(dropped.map((r) => r.error).join("\n")).toMatch(
      /artifact runs\/live\/iter-1\/shard-1\.pairs is not stored/,
    );

    const run = (await store.get("live"))!.run;
    expect(run.state).toBe(RunState.RUNNING);
    expect(run.error).toBe("");
    expect(await bus.state.keys("shards.live.")).toEqual([]);
  });

  it("records a stored shard's pairs_ready and fails the run for its own planned shard", {
    timeout: 60_000,
  }, async () => {
    const run = generatingRun("victim");
    await store.create(run);
    const tasks = planShards("victim", run.config!, PROMPTS, 1, {
      policy: "runs/victim/base",
      improver: "runs/victim/improver",
    });
    // Shard 0 stored by a generator: its pairs_ready is recorded.
    await bus.artifacts.put(tasks[0].outputArtifact, new Uint8Array(4), {
      meta: pairShardMeta({
        runId: "victim",
        iteration: 1,
        shardIndex: 0,
        pairCount: 2,
        policyCheckpointId: "runs/victim/base",
        improverCheckpointId: "runs/victim/improver",
        meanPairDistance: 0.1,
      }),
    });
    const ready = create(RunEventSchema, {
      eventId: "victim/iter-1/pairs-ready/0",
      runId: "victim",
      time: timestampNow(),
      payload: {
        case: "pairsReady",
        value: {
          iteration: 1,
          shardIndex: 0,
          artifact: tasks[0].outputArtifact,
          pairCount: 2,
          policyCheckpointId: "runs/victim/base",
        },
      },
    });
    await bus.events.publish("idpo.events.victim.pairs_ready", toBinary(RunEventSchema, ready), {
      msgId: ready.eventId,
    });
    // Shard 1 exactly as planned, failing its deliveries: that is a real failure of the run.
    const bytes = toBinary(PairShardTaskSchema, tasks[1]);
    await bus.work.enqueue(bytes, { msgId: tasks[1].outputArtifact });
    const deadline = Date.now() + 30_000;
    let state = RunState.RUNNING;
    while (Date.now() < deadline && state === RunState.RUNNING) {
      await sleep(100);
      state = (await store.get("victim"))!.run.state;
    }
    const ended = (await store.get("victim"))!.run;
    expect(ended.state).toBe(RunState.FAILED);
    expect(ended.error).toBe(
      "iteration 1: pair shard 1 failed after 2 deliveries: policy checkpoint not found",
    );
    expect(await bus.state.get(shardKey("victim", 1, 0))).toBeDefined();
  });
});
