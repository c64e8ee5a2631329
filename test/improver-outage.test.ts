/**
 * The pair-shard worker on a real nats-server (default delivery budget: 3 deliveries, 1 s and 5 s backoff)
 * while its Improver is unreachable for longer than that budget lasts: a peer that is down is not a bad
 * shard, so the shard waits for it on its first delivery and is stored once it is back.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createRouterTransport, type Interceptor } from "@connectrpc/connect";
import { type Bus, openBus, type Subscription, type TerminationReport } from "@idpo/bus";
import { createGenerator, type Generator, generatorConfigFromEnv, type ShardOutcome } from "@idpo/generator";
import { createImprover, type Improver } from "@idpo/improver";
import { CheckpointStore } from "@idpo/mesh";
import {
  memoryLogger,
  putCheckpoint,
  tinyImprover,
  tinyPolicy,
  useTestBackend,
} from "@idpo/mesh/test-fixtures";
import { PairShardTaskSchema, type RunEvent, RunEventSchema } from "@idpo/proto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestNats, type TestNats } from "./support/nats.js";

/** How long the Improver is away: longer than the 3 deliveries with 1 s and 5 s backoff used to last. */
const DOWN_MS = 10_000;

describe("pair generation while the Improver is down", () => {
  let nats: TestNats;
  let bus: Bus;
  let improver: Improver;
  let generator: Generator;
  let watch: Subscription;
  const models: ReturnType<typeof tinyPolicy>[] = [];

  beforeAll(async () => {
    await useTestBackend();
    models.push(tinyPolicy(31), tinyImprover(32));
    nats = await startTestNats();
    bus = await openBus({ backend: "nats", natsUrl: nats.url, namePrefix: "impdown" });
    const store = new CheckpointStore(bus.artifacts);
    await putCheckpoint(store, "runs/d1/base", models[0]);
    await putCheckpoint(store, "runs/d1/improver", models[1]);
    improver = await createImprover({
      config: {
        maxBatch: 32,
        maxDelayMs: 5,
        maxQueue: 1024,
        maxImages: 1024,
        checkpointId: "runs/d1/improver",
      },
      checkpoints: store,
      logger: memoryLogger(),
      setServing: () => {},
    });
    await improver.ready;
  });
  afterAll(async () => {
    await generator?.close();
    await improver?.close();
    await watch?.stop();
    await bus?.close({ timeoutMs: 0 });
    await nats?.stop();
    for (const m of models) m.dispose();
  });

  it("stores the shard on its first delivery once the Improver is back", { timeout: 120_000 }, async () => {
    let downUntil = Date.now() + DOWN_MS;
    let refused = 0;
    // What a client sees while no Improver listens: the connection is refused.
    const away: Interceptor = (next) => async (req) => {
      if (Date.now() < downUntil) {
        refused++;
        throw new ConnectError("connect ECONNREFUSED 127.0.0.1:50052", Code.Unavailable);
      }
      return next(req);
    };
    const outcomes: ShardOutcome[] = [];
    const terminated: TerminationReport[] = [];
    const events: RunEvent[] = [];
    watch = await bus.events.subscribe({ consumer: "impdown-watch", filter: "idpo.events.d1.>" }, (m) => {
      events.push(fromBinary(RunEventSchema, m.data));
    });
    const logger = memoryLogger();
    generator = await createGenerator({
      config: { ...generatorConfigFromEnv({}), pairDtype: "float32", heartbeatMs: 500, batchSize: 8 },
      checkpoints: new CheckpointStore(bus.artifacts),
      bus,
      improverTransport: createRouterTransport((router) => improver.routes(router), {
        transport: { interceptors: [away] },
      }),
      consumerName: "impdown-generator",
      logger,
      setServing: () => {},
      onShard: (o) => outcomes.push(o),
      onShardTerminated: (r) => terminated.push(r),
    });
    downUntil = Date.now() + DOWN_MS;
    await bus.work.enqueue(
      toBinary(
        PairShardTaskSchema,
        create(PairShardTaskSchema, {
          runId: "d1",
          iteration: 1,
          shardIndex: 0,
          shardCount: 1,
          prompts: ["a small red circle on a black background", "a large blue square on a white background"],
          seeds: [5n, 6n],
          policyCheckpointId: "runs/d1/base",
          improverCheckpointId: "runs/d1/improver",
          steps: 3,
          outputArtifact: "runs/d1/iter-1/shard-0.pairs",
        }),
      ),
      { msgId: "runs/d1/iter-1/shard-0.pairs" },
    );
    const deadline = Date.now() + 90_000;
    while (outcomes.length === 0 && terminated.length === 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(terminated, logger.lines.join("")).toEqual([]);
    expect(refused).toBeGreaterThan(2);
    expect(outcomes).toHaveLength(1);
    expect(outcomes[0]).toMatchObject({ pairCount: 2, republished: false, deliveryCount: 1 });
    expect(Date.now()).toBeGreaterThanOrEqual(downUntil);
    expect((await bus.artifacts.info("runs/d1/iter-1/shard-0.pairs"))?.meta?.pair_count).toBe("2");
    while (!events.some((e) => e.payload.case === "pairsReady") && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(events.map((e) => e.payload.case)).toEqual(["pairsReady"]);
    expect(await bus.work.pending()).toBe(0);
  });
});
