import { create, toBinary } from "@bufbuild/protobuf";
import {
  type Bus,
  type Delivery,
  MalformedMessageError,
  RevisionConflictError,
  type Subscription,
} from "@idpo/bus";
import { decodeRunEvent } from "@idpo/mesh";
import { PairsReadySchema, ProgressSchema, RunStage, RunState } from "@idpo/proto";
import type { Logger } from "@idpo/runtime";
import { RUN_ID_PATTERN } from "./run-config.js";
import { publishRunState } from "./run-events.js";
import { shardArtifact, shardCount, shardKey } from "./run-plan.js";
import { isTerminal, type RunStore } from "./run-store.js";

/** Durable consumer of pairs_ready events (shared by every controller replica). */
export const PAIRS_READY_CONSUMER = "controller";
/** Durable consumer of shard_failed events. */
export const SHARD_FAILED_CONSUMER = "controller-shard-failed";

/** Decodes a delivered event of `kind`, checking that it belongs to the run its subject names. */
function decodeEvent<K extends "pairsReady" | "shardFailed">(msg: Delivery, kind: K) {
  const ev = decodeRunEvent(msg.data, kind);
  const subjectRun = msg.subject.split(".")[2];
  if (!RUN_ID_PATTERN.test(ev.runId) || ev.runId !== subjectRun) {
    throw new MalformedMessageError(
      `${msg.subject}: event ${ev.eventId} names run ${JSON.stringify(ev.runId)}`,
    );
  }
  return ev;
}

/**
 * Records each shard's pairs_ready once, as the KV key `shards.<run>.iter-<k>.<i>` (a create: a redelivered or
 * re-published event finds the key and changes nothing), and fails the run of a shard_failed event. Drivers
 * watch those keys, so the controller that receives an event need not be the one driving its run.
 */
export async function subscribeShardEvents(
  bus: Bus,
  store: RunStore,
  logger: Logger,
): Promise<Subscription[]> {
  const pairsReady = await bus.events.subscribe(
    { consumer: PAIRS_READY_CONSUMER, filter: "idpo.events.*.pairs_ready", concurrency: 4 },
    async (msg) => {
      const ev = decodeEvent(msg, "pairsReady");
      const p = ev.payload.value;
      const expected = shardArtifact(ev.runId, p.iteration, p.shardIndex);
      if (p.iteration < 1 || p.artifact !== expected) {
        throw new MalformedMessageError(
          `${msg.subject}: iteration ${p.iteration} shard ${p.shardIndex} names artifact ${JSON.stringify(p.artifact)}, expected ${JSON.stringify(expected)}`,
        );
      }
      const stored = await store.get(ev.runId);
      if (!stored) {
        logger.warn("pairs_ready of an unknown run ignored", { runId: ev.runId, eventId: ev.eventId });
        return;
      }
      const cfg = stored.run.config!;
      if (p.iteration > cfg.iterations || p.shardIndex >= shardCount(cfg)) {
        throw new MalformedMessageError(
          `${msg.subject}: iteration ${p.iteration} shard ${p.shardIndex} is outside the run's plan (${cfg.iterations} iterations of ${shardCount(cfg)} shards)`,
        );
      }
      try {
        await bus.state.create(shardKey(ev.runId, p.iteration, p.shardIndex), toBinary(PairsReadySchema, p));
        logger.debug("pairs_ready recorded", {
          runId: ev.runId,
          iteration: p.iteration,
          shard: p.shardIndex,
        });
      } catch (err) {
        if (!(err instanceof RevisionConflictError)) throw err;
        logger.debug("pairs_ready already recorded", {
          runId: ev.runId,
          iteration: p.iteration,
          shard: p.shardIndex,
        });
      }
    },
  );
  const shardFailed = await bus.events.subscribe(
    { consumer: SHARD_FAILED_CONSUMER, filter: "idpo.events.*.shard_failed" },
    async (msg) => {
      const ev = decodeEvent(msg, "shardFailed");
      const p = ev.payload.value;
      const stored = await store.get(ev.runId);
      if (!stored || isTerminal(stored.run.state)) return;
      if (await bus.state.get(shardKey(ev.runId, p.iteration, p.shardIndex))) {
        logger.warn("shard_failed of a shard whose pairs are stored ignored", {
          runId: ev.runId,
          eventId: ev.eventId,
        });
        return;
      }
      const message = `iteration ${p.iteration}: pair shard ${p.shardIndex} failed after ${p.deliveries} deliveries: ${p.reason || "no reason given"}`;
      const res = await store.mutate(ev.runId, (r) => {
        if (isTerminal(r.state)) return false;
        const it = r.iterations[p.iteration - 1];
        // A failure of an iteration whose pairs were all stored (a late report) no longer matters.
        if (it && it.shardsTotal > 0 && it.shardsDone >= it.shardsTotal) return false;
        r.state = RunState.FAILED;
        r.stage = RunStage.UNSPECIFIED;
        r.error = message;
        r.progress = create(ProgressSchema, { message: "failed" });
        return true;
      });
      if (res.changed) {
        logger.error("run failed", { runId: ev.runId, error: message });
        await publishRunState(bus, res.run);
      }
    },
  );
  return [pairsReady, shardFailed];
}
