import { fromBinary, toBinary } from "@bufbuild/protobuf";
import type { StateWatch } from "@idpo/bus";
import { type PairShardTask, PairShardTaskSchema, PairsReadySchema, type Run, RunStage } from "@idpo/proto";
import type { StageContext } from "./driver-deps.js";
import { errorMessage, StageError } from "./run-errors.js";
import { planShards, previousPolicy, shardKeyPrefix } from "./run-plan.js";
import { withStageSpan } from "./run-tracing.js";
import { resolveTrainPrompts } from "./train-prompts.js";

/**
 * Iteration k's pair generation: its shards planned (the same plan every time), the ones not yet recorded
 * enqueued (de-duplicated by their artifact), and their records in the state store (`shard-events.ts` writes
 * them on pairs_ready) counted into the iteration's progress until every shard is in.
 */
export async function generateStage(ctx: StageContext, run: Run, k: number): Promise<void> {
  const cfg = run.config!;
  await ctx.writer.enterStage(
    RunStage.GENERATE,
    k,
    `iteration ${k}: generating ${cfg.pairsPerIteration} pairs`,
  );
  await withStageSpan(
    ctx.runId,
    "idpo.run.generate",
    { "idpo.stage": "generate", "idpo.iteration": k },
    async () => {
      const tasks = await iterationShards(ctx, run, k);
      const tally = new ShardTally(shardKeyPrefix(ctx.runId, k), tasks);
      const watch = await ctx.deps.bus.state.watch(tally.prefix, { includeExisting: true });
      const onAbort = () => watch.stop();
      ctx.signal.addEventListener("abort", onAbort, { once: true });
      try {
        await tallyRecorded(ctx, tally);
        const report = progressReporter(ctx, run, k, tally);
        await enqueueMissing(ctx, k, tasks, tally);
        await report(true);
        if (!tally.complete) await awaitShards(ctx, watch, tally, report);
      } finally {
        ctx.signal.removeEventListener("abort", onAbort);
        watch.stop();
      }
    },
  );
}

/** The shards of iteration k, planned from the run's train prompts. */
async function iterationShards(ctx: StageContext, run: Run, k: number): Promise<PairShardTask[]> {
  const cfg = run.config!;
  let prompts: string[];
  try {
    prompts = await resolveTrainPrompts(cfg);
  } catch (err) {
    throw new StageError(`iteration ${k}: ${errorMessage(err)}`);
  }
  return planShards(ctx.runId, cfg, prompts, k, {
    policy: previousPolicy(run, k),
    improver: run.improverCheckpoint!.id,
  });
}

/** The shards of one iteration recorded so far, and their pairs. */
class ShardTally {
  private readonly recorded = new Map<number, number>();

  constructor(
    /** Key prefix of the iteration's shard records. */
    readonly prefix: string,
    readonly tasks: readonly PairShardTask[],
  ) {}

  /** Counts a shard record; false when the key is no shard of the plan or the shard is counted already. */
  record(key: string, value: Uint8Array): boolean {
    const i = Number(key.slice(this.prefix.length));
    if (!Number.isInteger(i) || i < 0 || i >= this.tasks.length || this.recorded.has(i)) return false;
    let count = this.tasks[i].prompts.length;
    try {
      count = fromBinary(PairsReadySchema, value).pairCount;
    } catch {
      // The record's presence is what counts; its pair count falls back to the planned size.
    }
    this.recorded.set(i, count);
    return true;
  }

  has(shardIndex: number): boolean {
    return this.recorded.has(shardIndex);
  }

  /** How many shards are recorded. */
  get shards(): number {
    return this.recorded.size;
  }

  /** The pairs of the recorded shards. */
  get pairs(): number {
    let s = 0;
    for (const v of this.recorded.values()) s += v;
    return s;
  }

  get complete(): boolean {
    return this.recorded.size === this.tasks.length;
  }
}

/** Counts the shard records already in the state store. */
async function tallyRecorded(ctx: StageContext, tally: ShardTally): Promise<void> {
  const { state } = ctx.deps.bus;
  for (const key of await state.keys(tally.prefix)) {
    const e = await state.get(key);
    if (e) tally.record(key, e.value);
  }
}

/** Enqueues the shards not recorded yet. */
async function enqueueMissing(
  ctx: StageContext,
  k: number,
  tasks: readonly PairShardTask[],
  tally: ShardTally,
): Promise<void> {
  let enqueued = 0;
  for (const t of tasks) {
    if (tally.has(t.shardIndex)) continue;
    // msgId = the shard's artifact: a re-enqueue by a resumed controller is de-duplicated.
    await ctx.deps.bus.work.enqueue(toBinary(PairShardTaskSchema, t), { msgId: t.outputArtifact });
    enqueued++;
  }
  ctx.deps.logger.info("shards enqueued", {
    runId: ctx.runId,
    iteration: k,
    enqueued,
    recorded: tally.shards,
  });
}

/** Writes the iteration's shard and pair counts as its progress (rate and ETA from the pairs made since now). */
function progressReporter(
  ctx: StageContext,
  run: Run,
  k: number,
  tally: ShardTally,
): (force: boolean) => Promise<void> {
  const total = run.config!.pairsPerIteration;
  const startPairs = tally.pairs;
  const started = Date.now();
  return (force) => {
    const pairs = tally.pairs;
    const rate = (pairs - startPairs) / Math.max(1e-3, (Date.now() - started) / 1000);
    return ctx.writer.progress(
      RunStage.GENERATE,
      k,
      {
        done: pairs,
        total,
        eta: rate > 0 ? (total - pairs) / rate : 0,
        message: `iteration ${k}: ${tally.shards}/${tally.tasks.length} shards, ${pairs}/${total} pairs`,
      },
      force,
      (r) => {
        const it = r.iterations[k - 1];
        if (!it) return;
        it.shardsDone = tally.shards;
        it.pairs = pairs;
      },
    );
  };
}

/** Counts shard records as they are written until every shard is in (or the step is aborted). */
async function awaitShards(
  ctx: StageContext,
  watch: StateWatch,
  tally: ShardTally,
  report: (force: boolean) => Promise<void>,
): Promise<void> {
  for await (const change of watch) {
    if (change.op !== "put" || !tally.record(change.key, change.value)) continue;
    await report(tally.complete);
    if (tally.complete) break;
  }
  if (ctx.signal.aborted) throw ctx.signal.reason;
}
