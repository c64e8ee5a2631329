/** The typed protobuf layer (RunEvent, PairShardTask) over both backends. */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { PairShardTaskSchema, type RunEvent, RunEventSchema } from "@idpo/proto";
import { afterAll, afterEach, describe, expect, inject, it } from "vitest";
import {
  type Bus,
  consumeShards,
  enqueueShard,
  openBus,
  publishRunEvent,
  runEventSubject,
  type Subscription,
  subscribeRunEvents,
  type TerminationReport,
} from "../libs/bus/src/index.js";
import { TEST_LIMITS, waitFor } from "./bus-contract.js";

const root = mkdtempSync(join(tmpdir(), "idpo-bus-typed-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const openers: Record<string, () => Promise<Bus>> = {
  embedded: () =>
    openBus({
      backend: "embedded",
      dataDir: join(root, randomBytes(4).toString("hex")),
      limits: TEST_LIMITS,
    }),
  nats: () =>
    openBus({
      backend: "nats",
      natsUrl: inject("natsUrl"),
      namePrefix: `y${randomBytes(5).toString("hex")}`,
      limits: TEST_LIMITS,
    }),
};

function task(i: number, over: { prompts?: string[]; seeds?: bigint[] } = {}) {
  return {
    runId: "run-9",
    iteration: 1,
    shardIndex: i,
    shardCount: 4,
    prompts: ["a small red circle on a black background", "a large blue square on a white background"],
    seeds: [1n, 2n],
    policyCheckpointId: "run-9/base",
    improverCheckpointId: "run-9/improver",
    outputArtifact: `runs/run-9/iter-1/shard-${i}.pairs`,
    ...over,
  };
}

describe.each(Object.keys(openers))("typed events and shards: %s", (backend) => {
  const subs: Subscription[] = [];
  let bus: Bus;
  afterEach(async () => {
    await Promise.all(subs.splice(0).map((s) => s.stop({ timeoutMs: 0 })));
    await bus?.close({ timeoutMs: 0 });
  });

  it("publishes RunEvents to idpo.events.<run>.<kind> and delivers them decoded, filtered and once", async () => {
    bus = await openers[backend]();
    const ready = {
      eventId: "run-9/iter-1/pairs-ready/shard-0",
      runId: "run-9",
      payload: {
        case: "pairsReady" as const,
        value: { iteration: 1, shardIndex: 0, artifact: "a", pairCount: 2 },
      },
    };
    expect(runEventSubject("run-9", "pairsReady")).toBe("idpo.events.run-9.pairs_ready");
    expect((await publishRunEvent(bus.events, ready)).duplicate).toBe(false);
    expect((await publishRunEvent(bus.events, ready)).duplicate).toBe(true);
    await publishRunEvent(bus.events, {
      eventId: "run-9/iter-1/eval",
      runId: "run-9",
      payload: { case: "evalCompleted", value: { iteration: 1, label: "policy" } },
    });
    await publishRunEvent(bus.events, {
      eventId: "run-8/x",
      runId: "run-8",
      payload: { case: "pairsReady", value: { iteration: 1 } },
    });
    const ofRun: string[] = [];
    const ofKind: RunEvent[] = [];
    subs.push(
      await subscribeRunEvents(
        bus.events,
        { consumer: "run9", runId: "run-9" },
        (ev) => void ofRun.push(ev.eventId),
      ),
    );
    subs.push(
      await subscribeRunEvents(bus.events, { consumer: "ready", payload: "pairsReady" }, (ev, msg) => {
        expect(msg.subject).toBe(`idpo.events.${ev.runId}.pairs_ready`);
        ofKind.push(ev);
      }),
    );
    await waitFor(() => ofRun.length === 2 && ofKind.length === 2, "typed events");
    expect(ofRun).toEqual(["run-9/iter-1/pairs-ready/shard-0", "run-9/iter-1/eval"]);
    expect(ofKind.map((e) => e.runId)).toEqual(["run-9", "run-8"]);
    const v = ofKind[0].payload.case === "pairsReady" ? ofKind[0].payload.value : undefined;
    expect(v?.pairCount).toBe(2);
    expect(ofKind[0].time).toBeDefined();
    await expect(
      publishRunEvent(bus.events, { eventId: "", runId: "r", payload: ready.payload }),
    ).rejects.toThrow(/event_id/);
    await expect(
      publishRunEvent(bus.events, { eventId: "x", runId: "r.1", payload: ready.payload }),
    ).rejects.toThrow(/run_id/);
    await expect(publishRunEvent(bus.events, { eventId: "x", runId: "r" })).rejects.toThrow(/no payload/);
  });

  it("terminates and reports malformed events without stopping the subscription", async () => {
    bus = await openers[backend]();
    const reports: TerminationReport[] = [];
    const good: string[] = [];
    subs.push(
      await subscribeRunEvents(
        bus.events,
        { consumer: "ctl", onTerminated: (r) => void reports.push(r) },
        (ev) => {
          good.push(ev.eventId);
        },
      ),
    );
    const pairsReady = create(RunEventSchema, {
      eventId: "e-kind",
      runId: "r1",
      payload: { case: "evalCompleted", value: {} },
    });
    await bus.events.publish("idpo.events.r1.pairs_ready", new Uint8Array([0xff, 0xff, 0xff]), {
      msgId: "garbage",
    });
    await bus.events.publish("idpo.events.r1.pairs_ready", toBinary(RunEventSchema, pairsReady), {
      msgId: "e-kind",
    });
    const wrongId = create(RunEventSchema, {
      eventId: "e-1",
      runId: "r1",
      payload: { case: "evalCompleted", value: {} },
    });
    await bus.events.publish("idpo.events.r1.eval_completed", toBinary(RunEventSchema, wrongId), {
      msgId: "other-id",
    });
    const wrongRun = create(RunEventSchema, {
      eventId: "e-run",
      runId: "r2",
      payload: { case: "evalCompleted", value: {} },
    });
    await bus.events.publish("idpo.events.r1.eval_completed", toBinary(RunEventSchema, wrongRun), {
      msgId: "e-run",
    });
    await publishRunEvent(bus.events, {
      eventId: "fine",
      runId: "r1",
      payload: { case: "evalCompleted", value: {} },
    });
    await waitFor(() => reports.length === 4 && good.length === 1, "four reports and the good event");
    expect(good).toEqual(["fine"]);
    expect(reports.every((r) => r.reason === "malformed" && r.deliveryCount === 1)).toBe(true);
    expect(reports.map((r) => r.error)).toEqual([
      expect.stringMatching(/undecodable RunEvent/),
      expect.stringMatching(/payload evalCompleted does not match the subject's kind "pairs_ready"/),
      expect.stringMatching(/differs from its Nats-Msg-Id "other-id"/),
      expect.stringMatching(/run_id "r2" does not match the subject's run "r1"/),
    ]);
  });

  it("enqueues shards once, hands decoded tasks to workers, and turns failed shards into shard_failed events", async () => {
    bus = await openers[backend]();
    expect((await enqueueShard(bus, task(0))).duplicate).toBe(false);
    expect((await enqueueShard(bus, task(0))).duplicate).toBe(true);
    await expect(enqueueShard(bus, task(1, { seeds: [1n] }))).rejects.toThrow(/1 seeds for 2 prompts/);
    await enqueueShard(bus, task(1));
    // A task that is structurally wrong reaches the queue only through a raw enqueue (e.g. a foreign producer).
    const broken = create(PairShardTaskSchema, task(2, { prompts: [] }));
    await bus.work.enqueue(toBinary(PairShardTaskSchema, broken), { msgId: broken.outputArtifact });
    const failed: RunEvent[] = [];
    subs.push(
      await subscribeRunEvents(
        bus.events,
        { consumer: "ctl", payload: "shardFailed" },
        (ev) => void failed.push(ev),
      ),
    );
    const done: number[] = [];
    const terminated: TerminationReport[] = [];
    subs.push(
      await consumeShards(
        bus,
        (t, msg) => {
          if (t.shardIndex === 1) throw new Error(`improver refused shard 1 (delivery ${msg.deliveryCount})`);
          done.push(t.shardIndex);
          expect(t.seeds).toEqual([1n, 2n]);
        },
        { maxDeliver: 2, onTerminated: (r) => void terminated.push(r) },
      ),
    );
    await waitFor(() => failed.length === 2 && done.length === 1, "shard outcomes");
    await waitFor(async () => (await bus.work.pending()) === 0, "queue drained");
    expect(done).toEqual([0]);
    expect(terminated.map((r) => r.reason).sort()).toEqual(["malformed", "max-deliver"]);
    const byShard = new Map(
      failed.map((e) => [e.payload.case === "shardFailed" ? e.payload.value.shardIndex : -1, e]),
    );
    const s1 = byShard.get(1)?.payload;
    const s2 = byShard.get(2)?.payload;
    expect(s1?.case === "shardFailed" && s1.value).toMatchObject({
      iteration: 1,
      deliveries: 2,
      reason: "improver refused shard 1 (delivery 2)",
    });
    expect(s2?.case === "shardFailed" && s2.value.reason).toMatch(/prompts: at least one prompt/);
    expect(byShard.get(1)?.eventId).toBe("run-9/iter-1/shard-failed/shard-1");
  });
});
