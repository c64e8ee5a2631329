import { createHash } from "node:crypto";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  type Bus,
  type Delivery,
  decodeRunEvent,
  MalformedMessageError,
  RevisionConflictError,
  type Subscription,
} from "@idpo/bus";
import { readPairShardMeta } from "@idpo/mesh";
import {
  PairShardTaskSchema,
  type PairsReady,
  PairsReadySchema,
  ProgressSchema,
  type Run,
  RunStage,
  RunState,
  runStateEnded,
} from "@idpo/proto";
import type { Logger } from "@idpo/runtime";
import { RUN_ID_PATTERN } from "./run-config.js";
import { publishRunState } from "./run-events.js";
import { planShards, previousPolicy, shardArtifact, shardCount, shardKey } from "./run-plan.js";
import type { RunStore } from "./run-store.js";
import { resolveTrainPrompts } from "./train-prompts.js";

/** Durable consumer of pairs_ready events (shared by every controller replica). */
export const PAIRS_READY_CONSUMER = "controller";
/** Durable consumer of shard_failed events. */
export const SHARD_FAILED_CONSUMER = "controller-shard-failed";

/** Decodes a delivered event of `kind` (the bus's codec checks it against its subject) of a valid run id. */
function decodeEvent<K extends "pairsReady" | "shardFailed">(msg: Delivery, kind: K) {
  const ev = decodeRunEvent(msg, kind);
  if (!RUN_ID_PATTERN.test(ev.runId)) {
    throw new MalformedMessageError(
      `${msg.subject}: event ${ev.eventId} names run ${JSON.stringify(ev.runId)}`,
    );
  }
  return ev;
}

/** The policy iteration k of `run` samples its losers from, or undefined before the iteration started. */
function plannedPolicy(run: Run, k: number): string | undefined {
  if (k < 1 || k > run.iterations.length) return undefined;
  try {
    return previousPolicy(run, k);
  } catch {
    return undefined;
  }
}

/**
 * Why a pairs_ready is not the report of a shard the run planned and a generator stored ("" when it is):
 * its iteration has not started, or the stored artifact is missing or was written for another run,
 * iteration, shard, policy or pair count.
 */
async function pairsReadyProblem(bus: Bus, run: Run, p: PairsReady): Promise<string> {
  const policy = plannedPolicy(run, p.iteration);
  if (policy === undefined) return `iteration ${p.iteration} has not started`;
  if (p.policyCheckpointId !== policy) {
    return `policy ${JSON.stringify(p.policyCheckpointId)} is not the iteration's ${JSON.stringify(policy)}`;
  }
  const info = await bus.artifacts.info(p.artifact);
  if (!info) return `artifact ${p.artifact} is not stored`;
  const meta = readPairShardMeta(info.meta);
  if (!meta) return `artifact ${p.artifact} is not a pair shard written by a generator`;
  const want = {
    runId: run.runId,
    iteration: p.iteration,
    shardIndex: p.shardIndex,
    policyCheckpointId: policy,
    pairCount: p.pairCount,
  };
  for (const [k, v] of Object.entries(want)) {
    const got = meta[k as keyof typeof want];
    if (got !== v)
      return `artifact ${p.artifact} has ${k} ${JSON.stringify(got)}, expected ${JSON.stringify(v)}`;
  }
  return "";
}

/**
 * SHA-256 (hex) of shard `i` of iteration k as the run's driver enqueued it: the plan is a function of the
 * run's config, seed and checkpoints, so it is planned again here, byte for byte.
 */
async function plannedTaskSha256(run: Run, k: number, i: number): Promise<string | undefined> {
  const policy = plannedPolicy(run, k);
  const improver = run.improverCheckpoint?.id;
  if (policy === undefined || improver === undefined) return undefined;
  const tasks = planShards(run.runId, run.config!, await resolveTrainPrompts(run.config!), k, {
    policy,
    improver,
  });
  const t = tasks[i];
  return t && createHash("sha256").update(toBinary(PairShardTaskSchema, t)).digest("hex");
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
  const deps: ShardEventDeps = { bus, store, logger };
  const pairsReady = await bus.events.subscribe(
    { consumer: PAIRS_READY_CONSUMER, filter: "idpo.events.*.pairs_ready", concurrency: 4 },
    (msg) => recordPairsReady(deps, msg),
  );
  const shardFailed = await bus.events.subscribe(
    { consumer: SHARD_FAILED_CONSUMER, filter: "idpo.events.*.shard_failed" },
    (msg) => failRunOfShard(deps, msg),
  );
  return [pairsReady, shardFailed];
}

/** What the shard event handlers work with. */
interface ShardEventDeps {
  bus: Bus;
  store: RunStore;
  logger: Logger;
}

/** Records a pairs_ready of a planned shard whose artifact is stored (anything else is malformed). */
async function recordPairsReady({ bus, store, logger }: ShardEventDeps, msg: Delivery): Promise<void> {
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
  const problem = await pairsReadyProblem(bus, stored.run, p);
  if (problem) {
    throw new MalformedMessageError(
      `${msg.subject}: event ${ev.eventId} (iteration ${p.iteration} shard ${p.shardIndex}) is not a shard of the run: ${problem}`,
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
}

/** Fails the run of a shard_failed event, when the shard is one the run planned, as planned, and has no pairs. */
async function failRunOfShard({ bus, store, logger }: ShardEventDeps, msg: Delivery): Promise<void> {
  const ev = decodeEvent(msg, "shardFailed");
  const p = ev.payload.value;
  const stored = await store.get(ev.runId);
  if (!stored || runStateEnded(stored.run.state)) return;
  // Only the failure of a shard the run planned, as planned, fails it: a stray task naming the run
  // (another iteration, an unplanned index, other prompts or policy) is dropped and reported.
  const run = stored.run;
  const it = run.iterations[p.iteration - 1];
  const notPlanned = (why: string) =>
    new MalformedMessageError(
      `${msg.subject}: event ${ev.eventId} (iteration ${p.iteration} shard ${p.shardIndex}) is not a shard the run planned: ${why}`,
    );
  if (!it || run.iteration !== p.iteration) {
    throw notPlanned(`the run is at iteration ${run.iteration}`);
  }
  if (p.shardIndex >= it.shardsTotal)
    throw notPlanned(`iteration ${p.iteration} has ${it.shardsTotal} shards`);
  const planned = await plannedTaskSha256(run, p.iteration, p.shardIndex);
  if (planned === undefined || planned !== p.taskSha256) {
    throw notPlanned(
      `the task (policy ${JSON.stringify(p.policyCheckpointId)}, SHA-256 ${p.taskSha256 || "none"}) differs from the planned one`,
    );
  }
  if (await bus.state.get(shardKey(ev.runId, p.iteration, p.shardIndex))) {
    logger.warn("shard_failed of a shard whose pairs are stored ignored", {
      runId: ev.runId,
      eventId: ev.eventId,
    });
    return;
  }
  const message = `iteration ${p.iteration}: pair shard ${p.shardIndex} failed after ${p.deliveries} deliveries: ${p.reason || "no reason given"}`;
  const res = await store.mutate(ev.runId, (r) => {
    if (runStateEnded(r.state)) return false;
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
}
