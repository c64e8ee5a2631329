import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { createRouterTransport } from "@connectrpc/connect";
import type { Bus, Subscription, TerminationReport } from "@idpo/bus";
import { type DiffusionModel, improve, sample } from "@idpo/diffusion";
import { createImprover, type Improver } from "@idpo/improver";
import { CheckpointStore, decodePairShard, pairShardArtifact } from "@idpo/mesh";
import {
  memoryLogger,
  putCheckpoint,
  tempBus,
  tinyImprover,
  tinyPolicy,
  useTestBackend,
} from "@idpo/mesh/test-fixtures";
import { PairShardTaskSchema, type RunEvent, RunEventSchema } from "@idpo/proto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGenerator, type Generator, generatorConfigFromEnv } from "./generator-service.js";
import type { ShardOutcome } from "./shard-worker.js";

const RUN = "s1";
const PROMPTS = [
  "a small red circle on a black background",
  "a medium green square on a navy background",
  "a large cyan triangle on a gray background",
];

let bus: Bus;
let store: CheckpointStore;
const models: Record<string, DiffusionModel> = {};
let improver: Improver;
let generator: Generator;
let watch: Subscription;
const events: RunEvent[] = [];
const outcomes: ShardOutcome[] = [];
const terminated: TerminationReport[] = [];

function task(init: MessageInitShape<typeof PairShardTaskSchema>): Uint8Array {
  return toBinary(PairShardTaskSchema, create(PairShardTaskSchema, { runId: RUN, steps: 3, ...init }));
}

async function until<T>(what: string, get: () => T | undefined, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = get();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const pairsReady = (shard: number, iteration = 1) =>
  events.find(
    (e) =>
      e.payload.case === "pairsReady" &&
      e.payload.value.shardIndex === shard &&
      e.payload.value.iteration === iteration,
  );

beforeAll(async () => {
  await useTestBackend();
  ({ bus } = await tempBus());
  store = new CheckpointStore(bus.artifacts);
  models.base = tinyPolicy(21);
  models.iter1 = tinyPolicy(22);
  models.improver = tinyImprover(23);
  models.improverB = tinyImprover(24);
  await putCheckpoint(store, `runs/${RUN}/base`, models.base);
  await putCheckpoint(store, `runs/${RUN}/iter-1/policy`, models.iter1);
  await putCheckpoint(store, `runs/${RUN}/improver`, models.improver);
  await putCheckpoint(store, `runs/${RUN}/improver-b`, models.improverB);
  const logger = memoryLogger();
  improver = await createImprover({
    config: {
      maxBatch: 32,
      maxDelayMs: 5,
      maxQueue: 1024,
      maxImages: 1024,
      checkpointId: `runs/${RUN}/improver`,
    },
    checkpoints: store,
    logger,
    setServing: () => {},
  });
  await improver.ready;
  watch = await bus.events.subscribe(
    { consumer: "shard-test-watch", filter: `idpo.events.${RUN}.>` },
    (m) => {
      events.push(fromBinary(RunEventSchema, m.data));
    },
  );
  generator = await createGenerator({
    config: { ...generatorConfigFromEnv({}), pairDtype: "float32", heartbeatMs: 200, batchSize: 8 },
    checkpoints: store,
    bus,
    improverTransport: createRouterTransport((router) => improver.routes(router)),
    consumerName: "generator-shard-test",
    logger,
    setServing: () => {},
    onShard: (o) => outcomes.push(o),
    onShardTerminated: (r) => terminated.push(r),
  });
});

afterAll(async () => {
  await generator?.close();
  await improver?.close();
  await watch?.stop();
  for (const m of Object.values(models)) m.dispose();
  await bus?.close();
});

describe("pair-shard worker (generator + improver on the embedded bus)", () => {
  it("stores each shard's (prompt, winner, loser) records and publishes pairs_ready", async () => {
    await bus.work.enqueue(
      task({
        iteration: 1,
        shardIndex: 0,
        shardCount: 2,
        prompts: PROMPTS,
        seeds: [10n, 11n, 12n],
        policyCheckpointId: `runs/${RUN}/base`,
        improverCheckpointId: `runs/${RUN}/improver`,
        outputArtifact: pairShardArtifact(RUN, 1, 0),
      }),
      { msgId: pairShardArtifact(RUN, 1, 0) },
    );
    // Non-consecutive seeds: each winner still uses its pair's seed.
    await bus.work.enqueue(
      task({
        iteration: 1,
        shardIndex: 1,
        shardCount: 2,
        prompts: PROMPTS.slice(0, 2),
        seeds: [5n, 9n],
        policyCheckpointId: `runs/${RUN}/base`,
        improverCheckpointId: `runs/${RUN}/improver`,
        outputArtifact: pairShardArtifact(RUN, 1, 1),
        // SDEdit winners: the improver starts from the loser noised halfway.
        improveStrength: 0.5,
      }),
      { msgId: pairShardArtifact(RUN, 1, 1) },
    );
    const ready = [
      await until("pairs_ready 0", () => pairsReady(0)),
      await until("pairs_ready 1", () => pairsReady(1)),
    ];
    expect(ready.map((e) => e.eventId)).toEqual([
      `${RUN}/iter-1/pairs-ready/0`,
      `${RUN}/iter-1/pairs-ready/1`,
    ]);
    const seedsOf = [
      [10, 11, 12],
      [5, 9],
    ];
    for (let shard = 0; shard < 2; shard++) {
      const ev = ready[shard];
      if (ev.payload.case !== "pairsReady") throw new Error("unreachable");
      const pr = ev.payload.value;
      expect(pr).toMatchObject({
        iteration: 1,
        shardIndex: shard,
        artifact: pairShardArtifact(RUN, 1, shard),
        pairCount: seedsOf[shard].length,
        policyCheckpointId: `runs/${RUN}/base`,
      });
      const bytes = await bus.artifacts.get(pr.artifact);
      const decoded = decodePairShard(bytes!);
      expect(decoded.info).toMatchObject({
        runId: RUN,
        iteration: 1,
        shardIndex: shard,
        policyCheckpointId: `runs/${RUN}/base`,
        improverCheckpointId: `runs/${RUN}/improver`,
        steps: 3,
      });
      const n = seedsOf[shard].length;
      const prompts = PROMPTS.slice(0, n);
      expect(decoded.records.map((r) => [r.prompt, r.meta?.seed])).toEqual(
        prompts.map((p, i) => [p, seedsOf[shard][i]]),
      );
      // Losers are the policy's samples for (prompt, seed); winners the improver's output for (loser, prompt, seed).
      const losers = await sample(models.base, {
        prompts,
        seeds: seedsOf[shard],
        steps: 3,
        guidanceScale: 3,
      });
      const winners = await improve(models.improver, {
        images: losers,
        prompts,
        seeds: seedsOf[shard],
        steps: 3,
        strength: shard === 1 ? 0.5 : 1,
      });
      const per = 16 * 16 * 3;
      let dist = 0;
      for (let i = 0; i < n; i++) {
        const r = decoded.records[i];
        for (let k = 0; k < per; k++) {
          expect(Math.abs(r.loser.data[k] - losers.data[i * per + k])).toBeLessThanOrEqual(1e-6);
          expect(Math.abs(r.winner.data[k] - winners.data[i * per + k])).toBeLessThanOrEqual(1e-6);
        }
        for (let p = 0; p < per / 3; p++) {
          let d2 = 0;
          for (let c = 0; c < 3; c++) d2 += (r.winner.data[3 * p + c] - r.loser.data[3 * p + c]) ** 2;
          dist += Math.sqrt(d2);
        }
      }
      expect(pr.meanPairDistance).toBeCloseTo(dist / ((n * per) / 3), 5);
      expect(pr.meanPairDistance).toBeGreaterThan(0);
    }
    expect(
      outcomes
        .filter((o) => !o.republished)
        .map((o) => o.artifact)
        .sort(),
    ).toEqual([pairShardArtifact(RUN, 1, 0), pairShardArtifact(RUN, 1, 1)]);
    expect(await bus.work.pending()).toBe(0);
  });

  it("on a redelivered shard whose artifact exists, only republishes pairs_ready (the shard is stored once)", async () => {
    const before = await bus.artifacts.info(pairShardArtifact(RUN, 1, 0));
    const seen = outcomes.length;
    await bus.work.enqueue(
      task({
        iteration: 1,
        shardIndex: 0,
        shardCount: 2,
        prompts: PROMPTS,
        seeds: [10n, 11n, 12n],
        policyCheckpointId: `runs/${RUN}/base`,
        improverCheckpointId: `runs/${RUN}/improver`,
        outputArtifact: pairShardArtifact(RUN, 1, 0),
      }),
      { msgId: "a-second-copy-of-shard-0" },
    );
    const o = await until("the second outcome", () => outcomes[seen]);
    expect(o).toMatchObject({ republished: true, pairCount: 3, policyCheckpointId: `runs/${RUN}/base` });
    const after = await bus.artifacts.info(pairShardArtifact(RUN, 1, 0));
    expect(after?.mtime.getTime()).toBe(before?.mtime.getTime());
    expect(after?.digest).toBe(before?.digest);
    expect(generator.stats()).toMatchObject({ shardsStored: 2, shardsRepublished: 1 });
  });

  it("terminates malformed tasks and failing ones (reporting shard_failed) without crashing", async () => {
    await bus.work.enqueue(new Uint8Array([0xff, 0x01, 0x02, 0x03]), { msgId: "junk" });
    await bus.work.enqueue(
      task({
        iteration: 1,
        shardIndex: 5,
        prompts: PROMPTS,
        seeds: [1n],
        policyCheckpointId: `runs/${RUN}/base`,
        outputArtifact: pairShardArtifact(RUN, 1, 5),
      }),
      { msgId: "mismatch" },
    );
    await bus.work.enqueue(
      task({
        iteration: 1,
        shardIndex: 6,
        prompts: PROMPTS.slice(0, 1),
        seeds: [1n],
        policyCheckpointId: `runs/${RUN}/missing`,
        outputArtifact: pairShardArtifact(RUN, 1, 6),
      }),
      { msgId: "missing-policy" },
    );
    await bus.work.enqueue(
      task({
        iteration: 1,
        shardIndex: 7,
        prompts: PROMPTS.slice(0, 1),
        seeds: [1n],
        policyCheckpointId: `runs/${RUN}/base`,
        outputArtifact: pairShardArtifact(RUN, 1, 7),
        improveStrength: 1.5,
      }),
      { msgId: "bad-strength" },
    );
    await until("four terminations", () => (terminated.length >= 4 ? true : undefined));
    const byId = Object.fromEntries(terminated.map((r) => [r.msgId, r]));
    expect(byId.junk).toMatchObject({ reason: "malformed", deliveryCount: 1 });
    expect(byId.junk.error).toMatch(/not a PairShardTask/);
    expect(byId.mismatch).toMatchObject({ reason: "malformed" });
    expect(byId.mismatch.error).toMatch(/seeds: 1 seeds for 3 prompts/);
    expect(byId["bad-strength"]).toMatchObject({ reason: "malformed" });
    expect(byId["bad-strength"].error).toMatch(/improve_strength: 1.5 is outside \(0, 1\]/);
    expect(byId["missing-policy"]).toMatchObject({ reason: "max-deliver", deliveryCount: 2 });
    expect(byId["missing-policy"].error).toMatch(/runs\/s1\/missing.* is not in the artifact store/);
    const failed = (shard: number) =>
      events.find((e) => e.payload.case === "shardFailed" && e.payload.value.shardIndex === shard);
    const f5 = await until("shard_failed 5", () => failed(5));
    const f6 = await until("shard_failed 6", () => failed(6));
    expect(f5.eventId).toBe(`${RUN}/iter-1/shard-failed/shard-5`);
    expect(f5.payload.value).toMatchObject({ iteration: 1, deliveries: 1 });
    expect(f6.payload.value).toMatchObject({ iteration: 1, deliveries: 2 });
    expect(await bus.artifacts.info(pairShardArtifact(RUN, 1, 6))).toBeUndefined();
  });

  it("loads the task's policy, switches the improver to the task's checkpoint, and reports which served the shard", async () => {
    expect(generator.current()?.id).toBe(`runs/${RUN}/base`);
    await bus.work.enqueue(
      task({
        iteration: 2,
        shardIndex: 0,
        shardCount: 1,
        prompts: PROMPTS.slice(1),
        seeds: [40n, 41n],
        policyCheckpointId: `runs/${RUN}/iter-1/policy`,
        improverCheckpointId: `runs/${RUN}/improver-b`,
        textGuidanceScale: 2,
        imageGuidanceScale: 1.5,
        outputArtifact: pairShardArtifact(RUN, 2, 0),
      }),
      { msgId: pairShardArtifact(RUN, 2, 0) },
    );
    const ev = await until("pairs_ready of iteration 2", () => pairsReady(0, 2));
    expect(ev.payload.value).toMatchObject({ policyCheckpointId: `runs/${RUN}/iter-1/policy`, pairCount: 2 });
    expect(generator.current()?.id).toBe(`runs/${RUN}/iter-1/policy`);
    expect(improver.current()?.id).toBe(`runs/${RUN}/improver-b`);
    const shard = decodePairShard((await bus.artifacts.get(pairShardArtifact(RUN, 2, 0)))!);
    expect(shard.info).toMatchObject({
      improverCheckpointId: `runs/${RUN}/improver-b`,
      textGuidanceScale: 2,
    });
    const losers = await sample(models.iter1, { prompts: PROMPTS.slice(1), seeds: [40, 41], steps: 3 });
    const winners = await improve(models.improverB, {
      images: losers,
      prompts: PROMPTS.slice(1),
      seeds: [40, 41],
      steps: 3,
      sT: 2,
      sI: 1.5,
    });
    for (let k = 0; k < 16 * 16 * 3; k++) {
      expect(Math.abs(shard.records[1].winner.data[k] - winners.data[16 * 16 * 3 + k])).toBeLessThanOrEqual(
        1e-6,
      );
    }
  });

  it("tells an improver replica without weights which checkpoint to load", async () => {
    await generator.close();
    await improver.close();
    const logger = memoryLogger();
    improver = await createImprover({
      config: { maxBatch: 32, maxDelayMs: 5, maxQueue: 1024, maxImages: 1024 },
      checkpoints: store,
      logger,
      setServing: () => {},
    });
    expect(improver.current()).toBeUndefined();
    generator = await createGenerator({
      config: { ...generatorConfigFromEnv({}), heartbeatMs: 200 },
      checkpoints: store,
      bus,
      improverTransport: createRouterTransport((router) => improver.routes(router)),
      consumerName: "generator-shard-test",
      logger,
      setServing: () => {},
    });
    await bus.work.enqueue(
      task({
        iteration: 3,
        shardIndex: 0,
        prompts: PROMPTS.slice(0, 1),
        seeds: [77n],
        policyCheckpointId: `runs/${RUN}/base`,
        improverCheckpointId: `runs/${RUN}/improver`,
        outputArtifact: pairShardArtifact(RUN, 3, 0),
      }),
      { msgId: pairShardArtifact(RUN, 3, 0) },
    );
    await until("pairs_ready of iteration 3", () => pairsReady(0, 3));
    expect(improver.current()?.id).toBe(`runs/${RUN}/improver`);
    const shard = decodePairShard((await bus.artifacts.get(pairShardArtifact(RUN, 3, 0)))!);
    expect(shard).toMatchObject({ dtype: "uint8", info: { improverCheckpointId: `runs/${RUN}/improver` } });
  });
});
