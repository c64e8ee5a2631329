import { clone, create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError } from "@connectrpc/connect";
import { type Bus, RevisionConflictError } from "@idpo/bus";
import type { CheckpointStore } from "@idpo/mesh";
import {
  type CheckpointRef,
  EvaluationSchema,
  type GeneratedImage,
  GenerateImagesResponseSchema,
  type GenerationSpec,
  GenerationSpecSchema,
  type GeneratorService,
  IterationSchema,
  type Job,
  JobKind,
  type JobSpec,
  JobSpecSchema,
  JobState,
  PairShardTaskSchema,
  PairsReadySchema,
  ProgressSchema,
  ReferencePolicy,
  type Run,
  RunMethod,
  RunStage,
  RunState,
  type ScorerService,
  type TrainerService,
  type TrainingConfig,
  TrainingConfigSchema,
} from "@idpo/proto";
import { backoffMs, isTransient, type Logger, retryTransient, sleep } from "@idpo/runtime";
import { context, type Span, trace } from "@opentelemetry/api";
import { publishRunState, stateEventId } from "./run-events.js";
import {
  checkpointIds,
  deriveSeed,
  iterationPrefix,
  jobIds,
  planShards,
  samplesArtifact,
  shardCount,
  shardKeyPrefix,
} from "./run-plan.js";
import { isTerminal, type RunStore } from "./run-store.js";
import { endRunSpan, runTraceKey, startRunSpan, withStageSpan } from "./run-tracing.js";
import { resolveTrainPrompts } from "./train-prompts.js";

/** Clients of the peers a controller drives. */
export interface Peers {
  trainer: Client<typeof TrainerService>;
  generator: Client<typeof GeneratorService>;
  scorer: Client<typeof ScorerService>;
}

/** Timings of the controller (from the environment; tests shorten them). */
export interface ControllerOptions {
  /** Smallest interval between two progress writes of one run, ms (IDPO_CONTROLLER_PROGRESS_MS, default 1000). */
  progressIntervalMs: number;
  /** How long a stage keeps retrying an unreachable peer before the run fails, ms
   * (IDPO_CONTROLLER_PEER_RETRY_S, default 600 s). */
  peerRetryMs: number;
  /** How long evaluation waits for the generators to load a new checkpoint on their own (they do on
   * checkpoint.published) before asking with LoadCheckpoint, ms (IDPO_CONTROLLER_LOAD_WAIT_MS, default 5000). */
  loadWaitMs: number;
  /** First delay between GetJob polls when a WatchJob stream breaks, ms (doubles up to 30 s; default 1000). */
  jobPollMs: number;
}

/** Default timings. */
export const DEFAULT_CONTROLLER_OPTIONS: ControllerOptions = {
  progressIntervalMs: 1000,
  peerRetryMs: 600_000,
  loadWaitMs: 5000,
  jobPollMs: 1000,
};

/** What a driver works with. */
export interface DriverDeps {
  store: RunStore;
  bus: Bus;
  peers: Peers;
  checkpoints: CheckpointStore;
  logger: Logger;
  options: ControllerOptions;
}

/** A stage failed for a reason a retry cannot cure: the run fails with this message. */
export class StageError extends Error {
  override readonly name = "StageError";
}

/** The run ended (cancelled, failed elsewhere) or the controller is stopping: stop driving quietly. */
export class RunEnded extends Error {
  override readonly name = "RunEnded";
}

/** The step was overtaken: someone else (another controller) advanced the run past it. */
class Superseded extends Error {
  override readonly name = "Superseded";
}

/** The next thing a run needs, decided from its stored state alone (so a restarted controller resumes). */
export type Action =
  | { kind: "base" }
  | { kind: "improver" }
  | { kind: "start-iteration"; k: number }
  | { kind: "generate"; k: number }
  | { kind: "train"; k: number }
  | { kind: "evaluate"; k: number }
  | { kind: "finish" };

/** The next action of a non-terminal run. */
export function nextAction(run: Run): Action {
  const cfg = run.config!;
  if (!run.baseCheckpoint) return { kind: "base" };
  if (cfg.method === RunMethod.ITERATIVE_DPO && !run.improverCheckpoint) return { kind: "improver" };
  if (!run.baseEvaluation) return { kind: "evaluate", k: 0 };
  const n = run.iterations.length;
  if (n > 0) {
    const it = run.iterations[n - 1];
    if (cfg.method === RunMethod.ITERATIVE_DPO && it.shardsDone < it.shardsTotal)
      return { kind: "generate", k: n };
    if (!it.checkpoint) return { kind: "train", k: n };
    if (!it.evaluation) return { kind: "evaluate", k: n };
  }
  if (n < cfg.iterations) return { kind: "start-iteration", k: n + 1 };
  return { kind: "finish" };
}

function sameAction(a: Action, b: Action): boolean {
  return a.kind === b.kind && ("k" in a ? a.k : 0) === ("k" in b ? b.k : 0);
}

/** The policy checkpoint iteration k starts from. */
export function previousPolicy(run: Run, k: number): string {
  if (k === 1) return run.config!.startCheckpointId || run.baseCheckpoint!.id;
  const prev = run.iterations[k - 2]?.checkpoint;
  if (!prev) throw new Error(`run ${run.runId}: iteration ${k - 1} has no checkpoint`);
  return prev.id;
}

/** The trainer job of iteration k (DPO on the iteration's shards, SPIN, offline DPO or SFT on the dataset). */
export function iterationJobSpec(run: Run, k: number): JobSpec {
  const cfg = run.config!;
  const init = previousPolicy(run, k);
  const base = run.baseCheckpoint!.id;
  const reference = cfg.reference === ReferencePolicy.PREVIOUS ? init : base;
  const training = seeded(cfg.policyTraining!, deriveSeed(cfg.seed, "train", k, cfg.policyTraining!.seed));
  let kind: JobKind;
  let data: string[];
  let ref = "";
  switch (cfg.method) {
    case RunMethod.ITERATIVE_DPO:
      kind = JobKind.DPO;
      data = [`artifact://${iterationPrefix(run.runId, k)}`];
      ref = reference;
      break;
    case RunMethod.SPIN:
      // SPIN: the previous iterate is both the reference and the source of the losers.
      kind = JobKind.SPIN;
      data = [cfg.dataset];
      ref = init;
      break;
    case RunMethod.DPO_OFFLINE:
      kind = JobKind.DPO;
      data = [cfg.dataset];
      ref = reference;
      break;
    case RunMethod.SFT:
      kind = JobKind.SFT;
      data = [cfg.dataset];
      break;
    default:
      throw new StageError(`unknown method ${cfg.method}`);
  }
  return create(JobSpecSchema, {
    jobId: jobIds.iteration(run.runId, k),
    runId: run.runId,
    kind,
    data,
    initCheckpointId: init,
    referenceCheckpointId: ref,
    modelPreset: cfg.modelPreset,
    training,
    outputCheckpointId: checkpointIds.iteration(run.runId, k),
    iteration: k,
  });
}

/** A copy of a training config with the job's seed (derived from the run's seed and the stage). */
function seeded(t: TrainingConfig, seed: number): TrainingConfig {
  const out = clone(TrainingConfigSchema, t);
  out.seed = BigInt(seed);
  return out;
}

function jobEnded(state: JobState): boolean {
  return state === JobState.SUCCEEDED || state === JobState.FAILED || state === JobState.CANCELLED;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Consecutive unexpected errors (bus hiccups, bugs) tolerated before the run is failed. */
const MAX_UNEXPECTED_ERRORS = 5;

/**
 * Drives one run to its end: base → improver → base evaluation → K × (pairs → training → evaluation).
 * Every decision is taken from the stored run (see `nextAction`) and every stage is idempotent (fixed job
 * ids, shard artifacts as msgIds, shard records as KV creates), so a driver can stop at any point and a new
 * one (in this or another controller) continues where it stopped. Every state change is a compare-and-set:
 * two drivers of one run never both advance it.
 */
export class RunDriver {
  private readonly abort = new AbortController();
  /** The step in progress: its action, the revision it was decided at, and its own abort. */
  private current?: { action: Action; revision: number; abort: AbortController; signal: AbortSignal };
  private lastPublished = "";
  private lastProgressWrite = 0;

  constructor(
    readonly runId: string,
    private readonly deps: DriverDeps,
  ) {}

  /** Aborted when the driver must stop, or when the current step was overtaken by another driver. */
  get signal(): AbortSignal {
    return this.current?.signal ?? this.abort.signal;
  }

  /** Stops driving (the run's state is kept; another driver can resume it). */
  stop(reason: string): void {
    if (!this.abort.signal.aborted) this.abort.abort(new RunEnded(reason));
  }

  /**
   * Drives the run until it ends or `stop` is called. Never throws. Everything the driver does is traced
   * under the run's root span, which is exported when the run ends here (a driver stopped before the end
   * drops its copy: whoever finishes the run records the root, from the run's creation time).
   */
  async run(): Promise<void> {
    const first = await this.deps.store.get(this.runId).catch(() => undefined);
    const root = first && !isTerminal(first.run.state) ? startRunSpan(first.run) : undefined;
    const ctx = root ? trace.setSpan(context.active(), root) : context.active();
    await context.with(ctx, () => this.drive());
    if (root) await this.endRoot(root);
  }

  /** Ends the root span if the run has ended and no other controller exported it already. */
  private async endRoot(root: Span): Promise<void> {
    try {
      const cur = await this.deps.store.get(this.runId);
      if (!cur || !isTerminal(cur.run.state)) return;
      await this.deps.bus.state.create(runTraceKey(this.runId), new Uint8Array());
      endRunSpan(root, cur.run);
    } catch (err) {
      if (!(err instanceof RevisionConflictError))
        this.deps.logger.debug("run root span not exported", { runId: this.runId, error: errorMessage(err) });
    }
  }

  private async drive(): Promise<void> {
    const watchStop = new AbortController();
    const watching = this.stopWhenEnded(watchStop.signal);
    try {
      await this.loop();
    } catch (err) {
      this.deps.logger.error("run driver stopped by an error", {
        runId: this.runId,
        error: errorMessage(err),
      });
    } finally {
      watchStop.abort();
      await watching;
    }
  }

  /**
   * Ends the driver when someone else ends the run (CancelRun, a shard_failed event, another controller),
   * and abandons the current step when another controller's write moved the run past it.
   */
  private async stopWhenEnded(signal: AbortSignal): Promise<void> {
    try {
      for await (const { run, revision } of this.deps.store.watch(this.runId, signal)) {
        if (isTerminal(run.state)) {
          this.stop(`run is ${RunState[run.state]}`);
          return;
        }
        const cur = this.current;
        if (cur && revision > cur.revision && !sameAction(nextAction(run), cur.action)) {
          cur.abort.abort(new Superseded(`the run moved on to ${nextAction(run).kind}`));
        }
      }
    } catch (err) {
      if (!signal.aborted)
        this.deps.logger.warn("run watch failed", { runId: this.runId, error: errorMessage(err) });
    }
  }

  private async loop(): Promise<void> {
    const { store, logger } = this.deps;
    let unexpected = 0;
    while (!this.signal.aborted) {
      const cur = await store.get(this.runId);
      if (!cur) {
        logger.warn("run vanished from the state store", { runId: this.runId });
        return;
      }
      if (isTerminal(cur.run.state)) {
        await this.publish(cur.run);
        return;
      }
      const action = nextAction(cur.run);
      const stepAbort = new AbortController();
      this.current = {
        action,
        revision: cur.revision,
        abort: stepAbort,
        signal: AbortSignal.any([this.abort.signal, stepAbort.signal]),
      };
      try {
        if (await this.step(cur.run, action)) return;
        unexpected = 0;
      } catch (err) {
        if (this.abort.signal.aborted || err instanceof RunEnded) return;
        if (stepAbort.signal.aborted) {
          logger.debug("step overtaken by another controller", { runId: this.runId, action: action.kind });
          continue;
        }
        const where =
          action.kind === "finish" ? "finish" : `${action.kind}${"k" in action ? ` ${action.k}` : ""}`;
        if (err instanceof StageError) {
          await this.fail(err.message);
          return;
        }
        if (err instanceof ConnectError) {
          await this.fail(`${where}: ${err.message}`);
          return;
        }
        unexpected++;
        logger.warn("run step failed; retrying", {
          runId: this.runId,
          action: where,
          error: errorMessage(err),
        });
        if (unexpected >= MAX_UNEXPECTED_ERRORS) {
          await this.fail(`${where}: ${errorMessage(err)}`);
          return;
        }
        await sleep(backoffMs(unexpected, 500, 10_000), this.abort.signal).catch(() => undefined);
      } finally {
        this.current = undefined;
      }
    }
  }

  /** Performs one action; true when the run is finished. */
  private async step(run: Run, action: Action): Promise<boolean> {
    switch (action.kind) {
      case "base":
        await this.base(run);
        return false;
      case "improver":
        await this.improver(run);
        return false;
      case "start-iteration":
        await this.startIteration(run, action.k);
        return false;
      case "generate":
        await this.generate(run, action.k);
        return false;
      case "train":
        await this.train(run, action.k);
        return false;
      case "evaluate":
        await this.evaluate(run, action.k);
        return false;
      case "finish":
        await this.commit((r) => {
          r.state = RunState.SUCCEEDED;
          r.stage = RunStage.DONE;
          r.progress = create(ProgressSchema, { message: "done" });
          return true;
        });
        this.deps.logger.info("run succeeded", { runId: this.runId });
        return true;
    }
  }

  // ---- state writes -------------------------------------------------------------------------------

  /** A compare-and-set write of the run; refuses (RunEnded) once the run is terminal. */
  private async commit(change: (run: Run) => boolean): Promise<Run> {
    const res = await this.deps.store.mutate(this.runId, (r) => {
      if (isTerminal(r.state)) throw new RunEnded(`run is ${RunState[r.state]}`);
      return change(r);
    });
    await this.publish(res.run);
    return res.run;
  }

  private async publish(run: Run): Promise<void> {
    const id = stateEventId(run);
    if (id === this.lastPublished) return;
    await publishRunState(this.deps.bus, run);
    this.lastPublished = id;
  }

  private async fail(message: string): Promise<void> {
    this.deps.logger.error("run failed", { runId: this.runId, error: message });
    const res = await this.deps.store.mutate(this.runId, (r) => {
      if (isTerminal(r.state)) return false;
      r.state = RunState.FAILED;
      r.stage = RunStage.UNSPECIFIED;
      r.error = message;
      r.progress = create(ProgressSchema, { message: "failed" });
      return true;
    });
    await this.publish(res.run);
  }

  private async enterStage(stage: RunStage, k: number, message: string): Promise<void> {
    this.lastProgressWrite = 0;
    await this.commit((r) => {
      if (r.state === RunState.RUNNING && r.stage === stage && r.iteration === k) return false;
      r.state = RunState.RUNNING;
      r.stage = stage;
      r.iteration = k;
      r.progress = create(ProgressSchema, { message });
      return true;
    });
    this.deps.logger.info("stage", { runId: this.runId, stage: RunStage[stage], iteration: k });
  }

  /** Writes progress of the current stage, at most once per progressIntervalMs unless `force`. */
  private async progress(
    stage: RunStage,
    k: number,
    p: { done: number; total: number; loss?: number; eta: number; message: string },
    force = false,
    extra?: (run: Run) => void,
  ): Promise<void> {
    const now = Date.now();
    if (!force && now - this.lastProgressWrite < this.deps.options.progressIntervalMs) return;
    this.lastProgressWrite = now;
    await this.commit((r) => {
      if (r.stage !== stage || r.iteration !== k) return false;
      r.progress = create(ProgressSchema, {
        done: BigInt(Math.max(0, Math.round(p.done))),
        total: BigInt(Math.max(0, Math.round(p.total))),
        loss: p.loss,
        etaSeconds: Number.isFinite(p.eta) ? Math.max(0, p.eta) : 0,
        message: p.message,
      });
      extra?.(r);
      return true;
    });
  }

  // ---- peers --------------------------------------------------------------------------------------

  private retry<T>(what: string, fn: () => Promise<T>): Promise<T> {
    return retryTransient(fn, {
      budgetMs: this.deps.options.peerRetryMs,
      signal: this.signal,
      onRetry: (err, attempt) =>
        this.deps.logger.warn("peer call failed; retrying", {
          runId: this.runId,
          call: what,
          attempt,
          error: errorMessage(err),
        }),
    });
  }

  /** Submits a trainer job (idempotent on its id) and follows it to its end, reporting progress. */
  private async runJob(spec: JobSpec, stage: RunStage, k: number, label: string): Promise<Job> {
    const { trainer } = this.deps.peers;
    const { options } = this.deps;
    const signal = this.signal;
    const jobId = spec.jobId;
    const start = async () =>
      (await this.retry("StartJob", () => trainer.startJob({ spec }, { signal }))).job!;
    let job = await start();
    let attempt = 0;
    let lastContact = Date.now();
    while (!jobEnded(job.state)) {
      try {
        for await (const res of trainer.watchJob({ jobId }, { signal })) {
          lastContact = Date.now();
          attempt = 0;
          job = res.job!;
          await this.jobProgress(job, stage, k, label, false);
          if (jobEnded(job.state)) break;
        }
        if (jobEnded(job.state)) break;
        // The stream ended early (the trainer is shutting down): poll until it is back.
        await sleep(backoffMs(attempt++, options.jobPollMs, 30_000), signal);
        job = (await this.retry("GetJob", () => trainer.getJob({ jobId }, { signal }))).job!;
      } catch (err) {
        if (signal.aborted) throw signal.reason;
        if (err instanceof ConnectError && err.code === Code.NotFound) {
          // The trainer lost the job (e.g. a fresh state store): submit it again.
          job = await start();
          continue;
        }
        if (!isTransient(err)) throw err;
        if (Date.now() - lastContact > options.peerRetryMs) {
          throw new StageError(
            `${label}: trainer unreachable while waiting for job ${jobId}: ${errorMessage(err)}`,
          );
        }
        await sleep(backoffMs(attempt++, options.jobPollMs, 30_000), signal);
      }
    }
    await this.jobProgress(job, stage, k, label, true);
    if (job.state === JobState.SUCCEEDED) {
      if (!job.finalCheckpoint)
        throw new StageError(`${label}: trainer job ${jobId} succeeded without a final checkpoint`);
      return job;
    }
    if (job.state === JobState.FAILED) {
      throw new StageError(`${label}: trainer job ${jobId} failed: ${job.error || "no reason given"}`);
    }
    throw new StageError(`${label}: trainer job ${jobId} was cancelled`);
  }

  private async jobProgress(
    job: Job,
    stage: RunStage,
    k: number,
    label: string,
    force: boolean,
  ): Promise<void> {
    const loss = job.metrics.loss;
    const state = JobState[job.state].toLowerCase();
    await this.progress(
      stage,
      k,
      {
        done: job.step,
        total: job.totalSteps,
        loss,
        eta: job.etaSeconds,
        message: `${label}: ${state}, step ${job.step}/${job.totalSteps}${loss !== undefined ? `, loss ${loss.toPrecision(4)}` : ""}`,
      },
      force,
    );
  }

  // ---- stages -------------------------------------------------------------------------------------

  private async base(run: Run): Promise<void> {
    const cfg = run.config!;
    await this.enterStage(
      RunStage.BASE,
      0,
      cfg.baseCheckpointId ? "loading the base model" : "training the base model",
    );
    const ref = await withStageSpan(this.runId, "idpo.run.base", { "idpo.stage": "base" }, async () => {
      if (cfg.baseCheckpointId)
        return await this.existingCheckpoint(cfg.baseCheckpointId, "config.base_checkpoint_id");
      const spec = create(JobSpecSchema, {
        jobId: jobIds.base(this.runId),
        runId: this.runId,
        kind: JobKind.PRETRAIN,
        data: [cfg.dataset],
        modelPreset: cfg.modelPreset,
        training: seeded(cfg.baseTraining!, deriveSeed(cfg.seed, "base", cfg.baseTraining!.seed)),
        outputCheckpointId: checkpointIds.base(this.runId),
        iteration: 0,
      });
      return (await this.runJob(spec, RunStage.BASE, 0, "base model")).finalCheckpoint!;
    });
    await this.commit((r) => {
      if (r.baseCheckpoint) return false;
      r.baseCheckpoint = ref;
      return true;
    });
  }

  private async improver(run: Run): Promise<void> {
    const cfg = run.config!;
    await this.enterStage(
      RunStage.IMPROVER,
      0,
      cfg.improverCheckpointId ? "loading the improvement model" : "training the improvement model",
    );
    const ref = await withStageSpan(
      this.runId,
      "idpo.run.improver",
      { "idpo.stage": "improver" },
      async () => {
        if (cfg.improverCheckpointId) {
          return await this.existingCheckpoint(cfg.improverCheckpointId, "config.improver_checkpoint_id");
        }
        const spec = create(JobSpecSchema, {
          jobId: jobIds.improver(this.runId),
          runId: this.runId,
          kind: JobKind.IMPROVER,
          data: [cfg.dataset],
          initCheckpointId: run.baseCheckpoint!.id,
          modelPreset: cfg.modelPreset,
          training: seeded(
            cfg.improverTraining!,
            deriveSeed(cfg.seed, "improver", cfg.improverTraining!.seed),
          ),
          outputCheckpointId: checkpointIds.improver(this.runId),
          iteration: 0,
        });
        return (await this.runJob(spec, RunStage.IMPROVER, 0, "improvement model")).finalCheckpoint!;
      },
    );
    await this.commit((r) => {
      if (r.improverCheckpoint) return false;
      r.improverCheckpoint = ref;
      return true;
    });
  }

  private async existingCheckpoint(id: string, field: string): Promise<CheckpointRef> {
    const ref = await this.deps.checkpoints.ref(id);
    if (!ref) throw new StageError(`${field}: checkpoint ${id} is not in the artifact store`);
    return ref;
  }

  private async startIteration(run: Run, k: number): Promise<void> {
    const cfg = run.config!;
    const pairs = cfg.method === RunMethod.ITERATIVE_DPO;
    await this.commit((r) => {
      if (r.iterations.length !== k - 1) return false;
      r.iterations.push(
        create(IterationSchema, {
          index: k,
          shardsTotal: pairs ? shardCount(cfg) : 0,
          jobId: jobIds.iteration(this.runId, k),
        }),
      );
      r.state = RunState.RUNNING;
      r.iteration = k;
      r.stage = pairs ? RunStage.GENERATE : RunStage.TRAIN;
      r.progress = create(ProgressSchema, { message: `iteration ${k} of ${cfg.iterations}` });
      return true;
    });
  }

  private async generate(run: Run, k: number): Promise<void> {
    const cfg = run.config!;
    const { bus } = this.deps;
    await this.enterStage(RunStage.GENERATE, k, `iteration ${k}: generating ${cfg.pairsPerIteration} pairs`);
    await withStageSpan(
      this.runId,
      "idpo.run.generate",
      { "idpo.stage": "generate", "idpo.iteration": k },
      async () => {
        let prompts: string[];
        try {
          prompts = await resolveTrainPrompts(cfg);
        } catch (err) {
          throw new StageError(`iteration ${k}: ${errorMessage(err)}`);
        }
        const tasks = planShards(this.runId, cfg, prompts, k, {
          policy: previousPolicy(run, k),
          improver: run.improverCheckpoint!.id,
        });
        const prefix = shardKeyPrefix(this.runId, k);
        const recorded = new Map<number, number>();
        const record = (key: string, value: Uint8Array): boolean => {
          const i = Number(key.slice(prefix.length));
          if (!Number.isInteger(i) || i < 0 || i >= tasks.length || recorded.has(i)) return false;
          let count = tasks[i].prompts.length;
          try {
            count = fromBinary(PairsReadySchema, value).pairCount;
          } catch {
            // The record's presence is what counts; its pair count falls back to the planned size.
          }
          recorded.set(i, count);
          return true;
        };
        const watch = await bus.state.watch(prefix, { includeExisting: true });
        const onAbort = () => watch.stop();
        this.signal.addEventListener("abort", onAbort, { once: true });
        try {
          for (const key of await bus.state.keys(prefix)) {
            const e = await bus.state.get(key);
            if (e) record(key, e.value);
          }
          const startPairs = sum(recorded);
          const started = Date.now();
          let enqueued = 0;
          for (const t of tasks) {
            if (recorded.has(t.shardIndex)) continue;
            // msgId = the shard's artifact: a re-enqueue by a resumed controller is de-duplicated.
            await bus.work.enqueue(toBinary(PairShardTaskSchema, t), { msgId: t.outputArtifact });
            enqueued++;
          }
          this.deps.logger.info("shards enqueued", {
            runId: this.runId,
            iteration: k,
            enqueued,
            recorded: recorded.size,
          });
          const report = (force: boolean) => {
            const pairs = sum(recorded);
            const rate = (pairs - startPairs) / Math.max(1e-3, (Date.now() - started) / 1000);
            return this.progress(
              RunStage.GENERATE,
              k,
              {
                done: pairs,
                total: cfg.pairsPerIteration,
                eta: rate > 0 ? (cfg.pairsPerIteration - pairs) / rate : 0,
                message: `iteration ${k}: ${recorded.size}/${tasks.length} shards, ${pairs}/${cfg.pairsPerIteration} pairs`,
              },
              force,
              (r) => {
                const it = r.iterations[k - 1];
                if (!it) return;
                it.shardsDone = recorded.size;
                it.pairs = pairs;
              },
            );
          };
          await report(true);
          if (recorded.size < tasks.length) {
            for await (const change of watch) {
              if (change.op !== "put" || !record(change.key, change.value)) continue;
              await report(recorded.size === tasks.length);
              if (recorded.size === tasks.length) break;
            }
            if (this.signal.aborted) throw this.signal.reason;
          }
        } finally {
          this.signal.removeEventListener("abort", onAbort);
          watch.stop();
        }
      },
    );
  }

  private async train(run: Run, k: number): Promise<void> {
    const spec = iterationJobSpec(run, k);
    await this.enterStage(RunStage.TRAIN, k, `iteration ${k}: training (${JobKind[spec.kind]})`);
    const job = await withStageSpan(
      this.runId,
      "idpo.run.train",
      { "idpo.stage": "train", "idpo.iteration": k },
      () => this.runJob(spec, RunStage.TRAIN, k, `iteration ${k}`),
    );
    await this.commit((r) => {
      const it = r.iterations[k - 1];
      if (!it || it.checkpoint) return false;
      it.checkpoint = job.finalCheckpoint;
      it.trainMetrics = { ...job.metrics };
      it.jobId = job.jobId;
      return true;
    });
  }

  private async evaluate(run: Run, k: number): Promise<void> {
    const cfg = run.config!;
    await this.enterStage(
      RunStage.EVALUATE,
      k,
      k === 0 ? "evaluating the base model" : `iteration ${k}: evaluating`,
    );
    const evaluation = await withStageSpan(
      this.runId,
      "idpo.run.evaluate",
      { "idpo.stage": "evaluate", "idpo.iteration": k },
      async () => {
        const baseId = run.baseCheckpoint!.id;
        const checkpointId = k === 0 ? baseId : run.iterations[k - 1].checkpoint!.id;
        const samples = await this.samples(run, k, checkpointId);
        const reference = k === 0 ? undefined : await this.samples(run, 0, baseId);
        const res = await this.retry("Evaluate", () =>
          this.deps.peers.scorer.evaluate(
            {
              images: samples.map((s) => s.image!),
              prompts: samples.map((s) => cfg.evalPrompts[s.promptIndex]),
              referenceImages: reference ? reference.map((s) => s.image!) : [],
              runId: this.runId,
              iteration: k,
              label: k === 0 ? "base" : "policy",
              checkpointId,
            },
            { signal: this.signal },
          ),
        );
        return create(EvaluationSchema, {
          reward: res.reward,
          vendi: res.vendi,
          winRateVsBase: k === 0 ? undefined : res.winRate,
          checkpointId,
        });
      },
    );
    await this.commit((r) => {
      if (k === 0) {
        if (r.baseEvaluation) return false;
        r.baseEvaluation = evaluation;
        return true;
      }
      const it = r.iterations[k - 1];
      if (!it || it.evaluation) return false;
      it.evaluation = evaluation;
      return true;
    });
  }

  /**
   * The evaluation samples of checkpoint `checkpointId` (iteration k; 0 = base): the run's eval prompts ×
   * eval_samples_per_prompt with seeds fixed by the run seed, so every model is sampled with the same noise.
   * Stored as an artifact, so a resumed controller (and later iterations' win-rates) reuse them.
   */
  private async samples(run: Run, k: number, checkpointId: string): Promise<GeneratedImage[]> {
    const cfg = run.config!;
    const { artifacts } = this.deps.bus;
    const name = samplesArtifact(this.runId, k);
    const expected = cfg.evalPrompts.length * cfg.evalSamplesPerPrompt;
    const stored = await artifacts.get(name);
    if (stored) {
      const res = fromBinary(GenerateImagesResponseSchema, stored);
      if (res.checkpoint?.id === checkpointId && res.images.length === expected) return res.images;
    }
    const spec = create(GenerationSpecSchema, {
      prompts: cfg.evalPrompts,
      imagesPerPrompt: cfg.evalSamplesPerPrompt,
      seed: BigInt(deriveSeed(cfg.seed, "eval")),
      steps: cfg.samplingSteps,
      guidanceScale: cfg.guidanceScale,
      checkpointId,
    });
    const { images, checkpoint } = await this.sample(spec, k, expected);
    images.sort((a, b) => a.promptIndex - b.promptIndex || Number(a.seed - b.seed));
    const res = create(GenerateImagesResponseSchema, { images, checkpoint });
    await artifacts.put(name, toBinary(GenerateImagesResponseSchema, res), {
      meta: { run_id: this.runId, iteration: String(k), checkpoint_id: checkpointId },
    });
    return images;
  }

  /**
   * Samples through the Generator with `spec.checkpoint_id` required. A generator that holds another
   * checkpoint answers FAILED_PRECONDITION; it loads new checkpoints on checkpoint.published by itself, and
   * after `loadWaitMs` the controller asks it to with LoadCheckpoint.
   */
  private async sample(
    spec: GenerationSpec,
    k: number,
    expected: number,
  ): Promise<{ images: GeneratedImage[]; checkpoint?: CheckpointRef }> {
    const { generator } = this.deps.peers;
    const { options } = this.deps;
    const signal = this.signal;
    const started = Date.now();
    // When the current streak of transient failures (generator down or restarting) began; 0 when none.
    let unreachableSince = 0;
    for (let attempt = 0; ; attempt++) {
      try {
        const images: GeneratedImage[] = [];
        let checkpoint: CheckpointRef | undefined;
        for await (const chunk of generator.generateImagesStream({ spec, chunkSize: 0 }, { signal })) {
          images.push(...chunk.images);
          checkpoint = chunk.checkpoint ?? checkpoint;
          await this.progress(RunStage.EVALUATE, k, {
            done: chunk.done,
            total: chunk.total,
            eta: 0,
            message: `${k === 0 ? "base model" : `iteration ${k}`}: sampling ${chunk.done}/${chunk.total} evaluation images`,
          });
        }
        if (images.length !== expected) {
          throw new StageError(
            `evaluation: the generator returned ${images.length} images, expected ${expected}`,
          );
        }
        return { images, checkpoint };
      } catch (err) {
        if (signal.aborted) throw signal.reason;
        if (err instanceof ConnectError && err.code === Code.FailedPrecondition) {
          unreachableSince = 0;
          const waited = Date.now() - started;
          if (waited > options.peerRetryMs) {
            throw new StageError(
              `evaluation: no generator serves checkpoint ${spec.checkpointId}: ${err.message}`,
            );
          }
          if (waited >= options.loadWaitMs) {
            await this.retry("LoadCheckpoint", () =>
              generator.loadCheckpoint({ checkpointId: spec.checkpointId }, { signal }),
            );
          }
        } else if (isTransient(err)) {
          unreachableSince ||= Date.now();
          if (Date.now() - unreachableSince > options.peerRetryMs) throw err;
        } else {
          throw err;
        }
        await sleep(backoffMs(attempt, 250, 5_000), signal);
      }
    }
  }
}

function sum(m: Map<number, number>): number {
  let s = 0;
  for (const v of m.values()) s += v;
  return s;
}
