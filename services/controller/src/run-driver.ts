import { create } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import { RevisionConflictError } from "@idpo/bus";
import {
  IterationSchema,
  ProgressSchema,
  type Run,
  RunMethod,
  RunStage,
  RunState,
  runStateEnded,
} from "@idpo/proto";
import { backoffMs, sleep } from "@idpo/runtime";
import { context, type Span, trace } from "@opentelemetry/api";
import type { DriverDeps, StageContext } from "./driver-deps.js";
import { evaluateStage } from "./evaluate-stage.js";
import { generateStage } from "./generate-stage.js";
import { modelStage } from "./model-stage.js";
import { errorMessage, RunEnded, StageError, Superseded } from "./run-errors.js";
import { type Action, actionName, jobIds, nextAction, sameAction, shardCount } from "./run-plan.js";
import { endRunSpan, runTraceKey, startRunSpan } from "./run-tracing.js";
import { RunWriter } from "./run-writer.js";
import { trainStage } from "./train-stage.js";

/** Consecutive unexpected errors (bus hiccups, bugs) tolerated before the run is failed. */
const MAX_UNEXPECTED_ERRORS = 5;

/** The step in progress: its action, the revision it was decided at, and its own abort. */
interface CurrentStep {
  action: Action;
  revision: number;
  abort: AbortController;
  signal: AbortSignal;
}

/**
 * Drives one run to its end: base → improver → base evaluation → K × (pairs → training → evaluation).
 * Every decision is taken from the stored run (see `nextAction`) and every stage is idempotent (fixed job
 * ids, shard artifacts as msgIds, shard records as KV creates), so a driver can stop at any point and a new
 * one (in this or another controller) continues where it stopped. Every state change is a compare-and-set:
 * two drivers of one run never both advance it.
 */
export class RunDriver {
  private readonly abort = new AbortController();
  private current?: CurrentStep;
  private readonly writer: RunWriter;

  constructor(
    readonly runId: string,
    private readonly deps: DriverDeps,
  ) {
    this.writer = new RunWriter(runId, deps);
  }

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
    const root = first && !runStateEnded(first.run.state) ? startRunSpan(first.run) : undefined;
    const ctx = root ? trace.setSpan(context.active(), root) : context.active();
    await context.with(ctx, () => this.drive());
    if (root) await this.endRoot(root);
  }

  /** Ends the root span if the run has ended and no other controller exported it already. */
  private async endRoot(root: Span): Promise<void> {
    try {
      const cur = await this.deps.store.get(this.runId);
      if (!cur || !runStateEnded(cur.run.state)) return;
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
        if (runStateEnded(run.state)) {
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

  /** Takes the run's next action, again and again, until the run ends or the driver is stopped. */
  private async loop(): Promise<void> {
    const { store, logger } = this.deps;
    let unexpected = 0;
    while (!this.signal.aborted) {
      const cur = await store.get(this.runId);
      if (!cur) {
        logger.warn("run vanished from the state store", { runId: this.runId });
        return;
      }
      if (runStateEnded(cur.run.state)) {
        await this.writer.publish(cur.run);
        return;
      }
      const action = nextAction(cur.run);
      const abort = new AbortController();
      this.current = {
        action,
        revision: cur.revision,
        abort,
        signal: AbortSignal.any([this.abort.signal, abort.signal]),
      };
      try {
        if (await this.step(cur.run, action, this.current.signal)) return;
        unexpected = 0;
      } catch (err) {
        if (this.abort.signal.aborted || err instanceof RunEnded) return;
        if (abort.signal.aborted) {
          logger.debug("step overtaken by another controller", { runId: this.runId, action: action.kind });
          continue;
        }
        const verdict = await this.onStepError(err, action, ++unexpected);
        if (verdict === "stop") return;
      } finally {
        this.current = undefined;
      }
    }
  }

  /**
   * What a failed step leads to: a StageError or a peer's error fails the run; any other error is retried
   * after a backoff, until it is the `unexpected`-th in a row of MAX_UNEXPECTED_ERRORS.
   */
  private async onStepError(err: unknown, action: Action, unexpected: number): Promise<"stop" | "retry"> {
    const where = actionName(action);
    if (err instanceof StageError) {
      await this.writer.fail(err.message);
      return "stop";
    }
    if (err instanceof ConnectError) {
      await this.writer.fail(`${where}: ${err.message}`);
      return "stop";
    }
    this.deps.logger.warn("run step failed; retrying", {
      runId: this.runId,
      action: where,
      error: errorMessage(err),
    });
    if (unexpected >= MAX_UNEXPECTED_ERRORS) {
      await this.writer.fail(`${where}: ${errorMessage(err)}`);
      return "stop";
    }
    await sleep(backoffMs(unexpected, 500, 10_000), this.abort.signal).catch(() => undefined);
    return "retry";
  }

  /** Performs one action; true when the run is finished. */
  private async step(run: Run, action: Action, signal: AbortSignal): Promise<boolean> {
    const ctx: StageContext = { runId: this.runId, deps: this.deps, signal, writer: this.writer };
    switch (action.kind) {
      case "base":
      case "improver":
        await modelStage(ctx, run, action.kind);
        return false;
      case "start-iteration":
        await this.startIteration(run, action.k);
        return false;
      case "generate":
        await generateStage(ctx, run, action.k);
        return false;
      case "train":
        await trainStage(ctx, run, action.k);
        return false;
      case "evaluate":
        await evaluateStage(ctx, run, action.k);
        return false;
      case "finish":
        await this.finish();
        return true;
    }
  }

  /** Adds iteration k to the run (with its shard count when it generates pairs). */
  private async startIteration(run: Run, k: number): Promise<void> {
    const cfg = run.config!;
    const pairs = cfg.method === RunMethod.ITERATIVE_DPO;
    await this.writer.commit((r) => {
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

  /** Marks the run SUCCEEDED. */
  private async finish(): Promise<void> {
    await this.writer.commit((r) => {
      r.state = RunState.SUCCEEDED;
      r.stage = RunStage.DONE;
      r.progress = create(ProgressSchema, { message: "done" });
      return true;
    });
    this.deps.logger.info("run succeeded", { runId: this.runId });
  }
}
