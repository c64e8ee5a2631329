import { createHash } from "node:crypto";
import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { type PairShardTask, PairShardTaskSchema } from "@idpo/proto";
import { MalformedMessageError } from "./errors.js";
import { publishRunEvent } from "./run-events.js";
import { isSubjectToken } from "./subjects.js";
import type { Bus, ConsumeOptions, Delivery, PublishAck, Subscription, TerminationReport } from "./types.js";

/** Structural problems of a shard task ("" when fine). Domain checks (checkpoint ids, sizes) stay with
 * the generator, which knows its limits. */
function taskProblem(t: PairShardTask): string {
  if (!isSubjectToken(t.runId)) return `run_id ${JSON.stringify(t.runId)} must match [A-Za-z0-9_=:@-]+`;
  if (t.iteration < 1) return "iteration must be ≥ 1";
  if (t.shardCount > 0 && t.shardIndex >= t.shardCount) {
    return `shard_index ${t.shardIndex} must be below shard_count ${t.shardCount}`;
  }
  if (t.prompts.length === 0) return "prompts: at least one prompt is required";
  if (t.seeds.length !== t.prompts.length) {
    return `seeds: ${t.seeds.length} seeds for ${t.prompts.length} prompts (one per pair)`;
  }
  if (t.policyCheckpointId === "") return "policy_checkpoint_id is required";
  if (t.outputArtifact === "") return "output_artifact is required (it is the shard's idempotency key)";
  return "";
}

/** Decode and validate a shard task; anything wrong is a {@link MalformedMessageError} naming the field. */
export function decodePairShardTask(data: Uint8Array): PairShardTask {
  let t: PairShardTask;
  try {
    t = fromBinary(PairShardTaskSchema, data);
  } catch (err) {
    throw new MalformedMessageError(`not a PairShardTask (${(err as Error).message})`);
  }
  const problem = taskProblem(t);
  if (problem)
    throw new MalformedMessageError(`PairShardTask ${JSON.stringify(t.outputArtifact)}: ${problem}`);
  return t;
}

/** Enqueue a pair-generation shard; msgId = its output artifact, so re-enqueueing it is a no-op. */
export async function enqueueShard(
  bus: Pick<Bus, "work">,
  init: MessageInitShape<typeof PairShardTaskSchema>,
): Promise<PublishAck> {
  const t = create(PairShardTaskSchema, init);
  const problem = taskProblem(t);
  if (problem) throw new Error(`PairShardTask ${JSON.stringify(t.outputArtifact)}: ${problem}`);
  return bus.work.enqueue(toBinary(PairShardTaskSchema, t), { msgId: t.outputArtifact });
}

/** Event id of the ShardFailed event of a shard: one per shard, however often termination is retried. */
export function shardFailedEventId(t: Pick<PairShardTask, "runId" | "iteration" | "shardIndex">): string {
  return `${t.runId}/iter-${t.iteration}/shard-failed/shard-${t.shardIndex}`;
}

/**
 * Work pair-generation shards: each task is decoded and validated (malformed → terminated and reported at
 * once), then handed to `handler`; the shard is acked when the handler resolves (after its pairs are
 * stored). A shard terminated for any reason also produces a `shard_failed` RunEvent for its run (when the
 * task names one), published before the termination so that it cannot be lost; it carries the SHA-256 of
 * the task's bytes, so that the controller can tell its own shard from a stray task naming the run.
 */
export function consumeShards(
  bus: Pick<Bus, "work" | "events">,
  handler: (task: PairShardTask, msg: Delivery) => Promise<void> | void,
  opts: ConsumeOptions = {},
): Promise<Subscription> {
  const beforeTerminate = async (report: TerminationReport) => {
    let t: PairShardTask | undefined;
    try {
      t = fromBinary(PairShardTaskSchema, report.data);
    } catch {
      t = undefined; // Undecodable: the bus's termination report is all there is.
    }
    if (t && isSubjectToken(t.runId)) {
      await publishRunEvent(bus.events, {
        eventId: shardFailedEventId(t),
        runId: t.runId,
        payload: {
          case: "shardFailed",
          value: {
            iteration: t.iteration,
            shardIndex: t.shardIndex,
            deliveries: report.deliveryCount,
            reason: report.error,
            policyCheckpointId: t.policyCheckpointId,
            taskSha256: createHash("sha256").update(report.data).digest("hex"),
          },
        },
      });
    }
    await opts.beforeTerminate?.(report);
  };
  return bus.work.consume((msg) => handler(decodePairShardTask(msg.data), msg), { ...opts, beforeTerminate });
}
