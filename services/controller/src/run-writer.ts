import { create } from "@bufbuild/protobuf";
import { type Job, JobState, ProgressSchema, type Run, RunStage, RunState, runStateEnded } from "@idpo/proto";
import type { DriverDeps } from "./driver-deps.js";
import { RunEnded } from "./run-errors.js";
import { publishRunState, stateEventId } from "./run-events.js";

/** A stage's progress as the run shows it. */
export interface StageProgress {
  done: number;
  total: number;
  loss?: number;
  /** Seconds left (a non-finite estimate is written as 0). */
  eta: number;
  message: string;
}

/**
 * The state writes of one run's driver: every change is a compare-and-set of the stored run followed by its
 * run_state_changed event (one per distinct state), and progress is written at most once per
 * `progressIntervalMs` of a stage.
 */
export class RunWriter {
  private lastPublished = "";
  private lastProgressWrite = 0;

  constructor(
    readonly runId: string,
    private readonly deps: Pick<DriverDeps, "store" | "bus" | "logger" | "options">,
  ) {}

  /** A compare-and-set write of the run; refuses (RunEnded) once the run is terminal. */
  async commit(change: (run: Run) => boolean): Promise<Run> {
    const res = await this.deps.store.mutate(this.runId, (r) => {
      if (runStateEnded(r.state)) throw new RunEnded(`run is ${RunState[r.state]}`);
      return change(r);
    });
    await this.publish(res.run);
    return res.run;
  }

  /** Publishes the run's state event unless this writer published the same state last. */
  async publish(run: Run): Promise<void> {
    const id = stateEventId(run);
    if (id === this.lastPublished) return;
    await publishRunState(this.deps.bus, run);
    this.lastPublished = id;
  }

  /** Fails the run with `message` (a run that has already ended is left as it is). */
  async fail(message: string): Promise<void> {
    this.deps.logger.error("run failed", { runId: this.runId, error: message });
    const res = await this.deps.store.mutate(this.runId, (r) => {
      if (runStateEnded(r.state)) return false;
      r.state = RunState.FAILED;
      r.stage = RunStage.UNSPECIFIED;
      r.error = message;
      r.progress = create(ProgressSchema, { message: "failed" });
      return true;
    });
    await this.publish(res.run);
  }

  /** Marks the run RUNNING in `stage` of iteration k (0 before the first) with a fresh progress message. */
  async enterStage(stage: RunStage, k: number, message: string): Promise<void> {
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
  async progress(
    stage: RunStage,
    k: number,
    p: StageProgress,
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

  /** Writes a trainer job's state as the stage's progress (`label` names the job in the message). */
  jobProgress(job: Job, stage: RunStage, k: number, label: string, force: boolean): Promise<void> {
    const loss = job.metrics.loss;
    const state = JobState[job.state].toLowerCase();
    return this.progress(
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
}
