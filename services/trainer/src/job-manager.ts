import { randomUUID } from "node:crypto";
import { clone, create, toBinary } from "@bufbuild/protobuf";
import { type Timestamp, TimestampSchema, timestampNow } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { type Bus, RevisionConflictError } from "@idpo/bus";
import { CheckpointStore, type SamplingEngine } from "@idpo/mesh";
import {
  type CheckpointRef,
  type Job,
  JobKind,
  JobSchema,
  type JobSpec,
  JobState,
  type ListJobsRequest,
  ModelKind,
} from "@idpo/proto";
import {
  type Logger,
  pageNewestFirst,
  runContext,
  type TraceContext,
  timestampNanos,
  withSpan,
} from "@idpo/runtime";
import { DEFAULT_BUS_WAIT_MS, untilBusAnswers } from "./bus-wait.js";
import {
  JobInputError,
  type ResumePoint,
  type RunnerDeps,
  type RunnerHooks,
  type RunOutcome,
  runJob,
  type SpinSamplerSettings,
  type StepUpdate,
} from "./job-runner.js";
import { intermediateCheckpointId, type ResolvedJob, resolveSpec } from "./job-spec.js";
import { JobStore } from "./job-store.js";
import { appendHistory } from "./metrics-history.js";
import { checkReachable, DataSourceError } from "./pair-sources.js";
import { type ProgressEventInput, publishCheckpoint, publishProgress } from "./run-events.js";
import { trainingStateArtifact } from "./training-state.js";

/** Dependencies and settings of a trainer. */
export interface JobManagerOptions {
  /** The bus: job state (KV), checkpoints and shards (artifacts), events. */
  bus: Bus;
  logger: Logger;
  /** Where generated shapes datasets are cached (IDPO_DATA_DIR). */
  dataDir: string;
  /** SPIN's loser sampler settings; default 20 steps, guidance 3.0. */
  spin?: Partial<SpinSamplerSettings>;
  /** Persist progress to KV and publish job_progress every this many steps (default 10). */
  progressEvery?: number;
  /** Resume QUEUED/RUNNING jobs found in KV at start (default true). */
  resume?: boolean;
  /** How long a write the job cannot go on without (final checkpoint, end state) waits for an unreachable
   * bus before the job fails, ms (default 10 minutes). Progress writes never wait. */
  busWaitMs?: number;
  /** A job of a run whose checkpoint_every is 0 checkpoints after this much training since its last
   * checkpoint, ms (default 5 minutes; 0 = only at the end): a crash late in a long job redoes at most this. */
  runCheckpointMs?: number;
  /** Data-parallel worker threads per job (default 1: train in the calling thread). */
  trainWorkers?: number;
  /** Where SPIN samples its losers (default: tfjs in this process). */
  spinEngine?: SamplingEngine;
}

/** Default interval of a run's job's time-based checkpoints: 5 minutes of training. */
export const DEFAULT_RUN_CHECKPOINT_MS = 300_000;

/** Default SPIN sampler settings: the run defaults of the controller (steps 20, guidance 3.0). */
export const DEFAULT_SPIN_SAMPLER: SpinSamplerSettings = { steps: 20, guidanceScale: 3.0 };

function isTerminal(state: JobState): boolean {
  return state === JobState.SUCCEEDED || state === JobState.FAILED || state === JobState.CANCELLED;
}

/** Why a running job was asked to stop. */
type StopReason = "cancel" | "shutdown" | "lost";

/** A job this trainer holds in memory (queued, running or finished here). */
interface LocalJob {
  job: Job;
  /** KV revision of the last write or read of this job. */
  revision: number;
  resolved: ResolvedJob;
  /** Watchers; called with undefined when the job leaves this trainer unfinished (then KV is the truth). */
  listeners: Set<(job: Job | undefined) => void>;
  abort?: AbortController;
  stopReason?: StopReason;
  /** Resolves when the job leaves this trainer (ended, stopped or lost). */
  settled: Promise<void>;
  settle: () => void;
  /** Encodings of KV writes sent since the last confirmed one: a write that timed out may still have
   * landed, and a conflict with one of these is this trainer's own write, not someone else's. */
  unconfirmed: Uint8Array[];
  /** The progress write in flight, if any (it never rejects; writes of one job never overlap). */
  progressWrite?: Promise<void>;
  /** The newest progress not yet written (written when the write in flight is done). */
  pendingProgress?: Omit<ProgressEventInput, "runId" | "jobId">;
  /** Where the job's span goes: under the StartJob call, or under its run's root when resumed from KV. */
  trace: TraceContext;
}

/** Most unconfirmed writes remembered per job (writes are serial, so a handful cover any outage). */
const MAX_UNCONFIRMED = 8;

/** A page of ListJobs. */
export interface JobPage {
  jobs: Job[];
  nextPageToken: string;
}

const MAX_WATCH_BACKLOG = 1024;

function notFound(jobId: string): ConnectError {
  return new ConnectError(`job_id: no job ${JSON.stringify(jobId)}`, Code.NotFound);
}

function createNanos(job: Job): bigint {
  return timestampNanos(job.createTime);
}

/** Newest first; ties by job id. */
function compareJobs(a: Job, b: Job): number {
  const d = createNanos(b) - createNanos(a);
  if (d !== 0n) return d > 0n ? 1 : -1;
  return a.jobId < b.jobId ? -1 : a.jobId > b.jobId ? 1 : 0;
}

/**
 * The trainer: a queue of training jobs run one at a time in submission order, persisted in KV
 * (`jobs.<job_id>`, Job proto, compare-and-set writes), with checkpoints and run events on the bus.
 * A trainer started on a bus that holds QUEUED or RUNNING jobs resumes them, each from its last
 * intermediate checkpoint.
 */
export class JobManager {
  private readonly store: JobStore;
  private readonly checkpoints: CheckpointStore;
  private readonly local = new Map<string, LocalJob>();
  private readonly queue: LocalJob[] = [];
  private running: LocalJob | undefined;
  private pumping: Promise<void> | undefined;
  private closed = false;
  private lastSubmission = 0n;
  private readonly spin: SpinSamplerSettings;
  private readonly progressEvery: number;
  private readonly busWaitMs: number;

  constructor(private readonly opts: JobManagerOptions) {
    this.store = new JobStore(opts.bus.state);
    this.checkpoints = new CheckpointStore(opts.bus.artifacts);
    this.spin = { ...DEFAULT_SPIN_SAMPLER, ...(opts.spin ?? {}) };
    this.progressEvery = opts.progressEvery ?? 10;
    this.busWaitMs = opts.busWaitMs ?? DEFAULT_BUS_WAIT_MS;
    if (!Number.isInteger(this.progressEvery) || this.progressEvery < 1) {
      throw new Error(`progressEvery must be a positive integer, got ${opts.progressEvery}`);
    }
  }

  /** Scans KV for unfinished jobs and queues them (RUNNING ones first, then by submission time). */
  async resumeStored(): Promise<number> {
    const stored = await this.store.list((key, err) =>
      this.opts.logger.warn("skipping bad job entry", { key, error: err.message }),
    );
    const pending = stored
      .filter((s) => s.job.state === JobState.QUEUED || s.job.state === JobState.RUNNING)
      .sort((a, b) => {
        const ra = a.job.state === JobState.RUNNING ? 0 : 1;
        const rb = b.job.state === JobState.RUNNING ? 0 : 1;
        return ra !== rb ? ra - rb : -compareJobs(a.job, b.job);
      });
    let n = 0;
    for (const s of pending) {
      if (this.local.has(s.job.jobId)) continue;
      let resolved: ResolvedJob;
      try {
        if (!s.job.spec) throw new Error("the stored job has no spec");
        resolved = resolveSpec(s.job.spec, () => s.job.jobId).job;
      } catch (e) {
        const job = clone(JobSchema, s.job);
        job.state = JobState.FAILED;
        job.error = `cannot resume: ${(e as Error).message}`;
        job.updateTime = timestampNow();
        await this.store.update(job, s.revision).catch(() => undefined);
        continue;
      }
      const l = this.track(s.job, s.revision, resolved);
      this.queue.push(l);
      n++;
      this.opts.logger.info("job found in KV, queued to resume", {
        jobId: s.job.jobId,
        state: JobState[s.job.state],
        step: s.job.step,
      });
    }
    this.pump();
    return n;
  }

  private track(job: Job, revision: number, resolved: ResolvedJob): LocalJob {
    let settle = () => {};
    const settled = new Promise<void>((r) => {
      settle = r;
    });
    const l: LocalJob = {
      job,
      revision,
      resolved,
      listeners: new Set(),
      settled,
      settle,
      unconfirmed: [],
      trace: runContext(resolved.runId),
    };
    this.local.set(job.jobId, l);
    return l;
  }

  /** StartJob: validates, stores the job QUEUED and queues it; an existing id returns the existing job. */
  async startJob(input: JobSpec): Promise<Job> {
    if (this.closed) throw new ConnectError("the trainer is shutting down", Code.Unavailable);
    if (input.jobId !== "") {
      const existing = await this.findJob(input.jobId);
      if (existing) return existing;
    }
    const { spec, job: resolved } = resolveSpec(input, () => `job-${randomUUID()}`);
    await this.checkInputs(resolved);
    const now = this.submissionTime();
    const job = create(JobSchema, {
      jobId: spec.jobId,
      spec,
      state: JobState.QUEUED,
      step: 0,
      totalSteps: resolved.training.steps,
      createTime: now,
      updateTime: now,
    });
    let revision: number;
    try {
      revision = await this.store.create(job);
    } catch (e) {
      if (e instanceof RevisionConflictError) {
        const existing = await this.findJob(job.jobId);
        if (existing) return existing;
      }
      throw e;
    }
    const l = this.track(job, revision, resolved);
    this.queue.push(l);
    this.opts.logger.info("job queued", {
      jobId: job.jobId,
      kind: JobKind[resolved.kind],
      runId: resolved.runId,
    });
    const accepted = clone(JobSchema, job);
    this.pump();
    return accepted;
  }

  /** Now, strictly after every earlier submission to this trainer (so listing order is submission order). */
  private submissionTime(): Timestamp {
    const now = timestampNow();
    let nanos = now.seconds * 1_000_000_000n + BigInt(now.nanos);
    if (nanos <= this.lastSubmission) nanos = this.lastSubmission + 1000n;
    this.lastSubmission = nanos;
    return create(TimestampSchema, {
      seconds: nanos / 1_000_000_000n,
      nanos: Number(nanos % 1_000_000_000n),
    });
  }

  /** Checks what needs I/O: checkpoints exist and have the right kind, data is reachable. */
  private async checkInputs(job: ResolvedJob): Promise<void> {
    const check = async (field: string, id: string, allowImprover: boolean) => {
      if (id === "") return;
      const ref = await this.checkpoints.ref(id);
      if (!ref) throw new ConnectError(`${field}: checkpoint ${JSON.stringify(id)} not found`, Code.NotFound);
      if (ref.kind === ModelKind.IMPROVER && !allowImprover) {
        throw new ConnectError(
          `${field}: checkpoint ${JSON.stringify(id)} is an improvement model; ${JobKind[job.kind]} needs a text-to-image policy`,
          Code.FailedPrecondition,
        );
      }
    };
    await check("spec.init_checkpoint_id", job.initCheckpointId, job.kind === JobKind.IMPROVER);
    await check("spec.reference_checkpoint_id", job.referenceCheckpointId, false);
    for (let i = 0; i < job.data.length; i++) {
      try {
        await checkReachable(job.data[i], `spec.data[${i}]`, this.opts.bus.artifacts);
      } catch (e) {
        if (e instanceof DataSourceError) {
          throw new ConnectError(e.message, e.missing ? Code.NotFound : Code.FailedPrecondition);
        }
        throw e;
      }
    }
  }

  private async findJob(jobId: string): Promise<Job | undefined> {
    const l = this.local.get(jobId);
    if (l) return clone(JobSchema, l.job);
    if (!/^[a-z0-9._/-]{1,128}$/.test(jobId) || jobId.includes("..")) return undefined;
    return (await this.store.get(jobId))?.job;
  }

  /** GetJob. */
  async getJob(jobId: string): Promise<Job> {
    const job = await this.findJob(jobId);
    if (!job) throw notFound(jobId);
    return job;
  }

  /** ListJobs: newest first, optionally one run's, paged. */
  async listJobs(req: Pick<ListJobsRequest, "runId" | "pageSize" | "pageToken">): Promise<JobPage> {
    const byId = new Map<string, Job>();
    for (const s of await this.store.list()) byId.set(s.job.jobId, s.job);
    for (const [id, l] of this.local) byId.set(id, clone(JobSchema, l.job));
    const jobs = [...byId.values()].filter((j) => req.runId === "" || j.spec?.runId === req.runId);
    const page = pageNewestFirst(jobs, (j) => ({ createNanos: createNanos(j), id: j.jobId }), req);
    return { jobs: page.items, nextPageToken: page.nextPageToken };
  }

  /**
   * WatchJob: the job now, then after every step and state change, until it ends (its last state is sent)
   * or `signal` aborts. Jobs held by another trainer on the same bus are followed through KV.
   */
  async *watchJob(jobId: string, signal: AbortSignal): AsyncGenerator<Job> {
    const l = this.local.get(jobId);
    if (!l) {
      yield* this.watchStored(jobId, signal);
      return;
    }
    const backlog: (Job | undefined)[] = [];
    let wake: (() => void) | undefined;
    const listener = (job: Job | undefined) => {
      backlog.push(job);
      // A slow watcher loses the oldest step updates, never the latest state.
      if (backlog.length > MAX_WATCH_BACKLOG) backlog.splice(0, backlog.length - MAX_WATCH_BACKLOG);
      wake?.();
    };
    const onAbort = () => wake?.();
    l.listeners.add(listener);
    signal.addEventListener("abort", onAbort);
    try {
      const first = clone(JobSchema, l.job);
      yield first;
      if (isTerminal(first.state)) return;
      for (;;) {
        while (backlog.length === 0 && !signal.aborted) {
          await new Promise<void>((r) => {
            wake = r;
          });
          wake = undefined;
        }
        if (signal.aborted) return;
        const job = backlog.shift();
        if (job === undefined) break;
        yield job;
        if (isTerminal(job.state)) return;
      }
    } finally {
      l.listeners.delete(listener);
      signal.removeEventListener("abort", onAbort);
    }
    // The job left this trainer unfinished (shutdown, or another trainer took it over): follow it in KV.
    if (!signal.aborted) yield* this.watchStored(jobId, signal);
  }

  private async *watchStored(jobId: string, signal: AbortSignal): AsyncGenerator<Job> {
    const stored = await this.findJob(jobId);
    if (!stored) throw notFound(jobId);
    yield stored;
    if (isTerminal(stored.state)) return;
    const watch = await this.opts.bus.state.watch(`jobs.${jobId}`, { includeExisting: false });
    const onAbort = () => watch.stop();
    signal.addEventListener("abort", onAbort);
    try {
      for await (const change of watch) {
        if (change.key !== `jobs.${jobId}` || change.op !== "put") continue;
        const job = await this.findJob(jobId);
        if (!job) return;
        yield job;
        if (isTerminal(job.state)) return;
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      watch.stop();
    }
  }

  /**
   * CancelJob: a queued job is cancelled at once; a running one stops before its next step (its
   * checkpoints are kept) and this waits up to `waitMs` for it to stop. Ended jobs are returned unchanged.
   */
  async cancelJob(jobId: string, waitMs = 10_000): Promise<Job> {
    const l = this.local.get(jobId);
    if (!l) return this.cancelStored(jobId);
    if (isTerminal(l.job.state)) return clone(JobSchema, l.job);
    if (l === this.running) {
      l.stopReason = "cancel";
      l.abort?.abort();
      await Promise.race([l.settled, new Promise((r) => setTimeout(r, waitMs).unref())]);
      return clone(JobSchema, l.job);
    }
    const i = this.queue.indexOf(l);
    if (i >= 0) this.queue.splice(i, 1);
    await this.finish(l, JobState.CANCELLED, "");
    return clone(JobSchema, l.job);
  }

  private async cancelStored(jobId: string): Promise<Job> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const s = /^[a-z0-9._/-]{1,128}$/.test(jobId) ? await this.store.get(jobId) : undefined;
      if (!s) throw notFound(jobId);
      if (isTerminal(s.job.state)) return s.job;
      const job = clone(JobSchema, s.job);
      job.state = JobState.CANCELLED;
      job.etaSeconds = 0;
      job.updateTime = timestampNow();
      try {
        // The trainer running it sees its next compare-and-set fail and stops.
        await this.store.update(job, s.revision);
        return job;
      } catch (e) {
        if (!(e instanceof RevisionConflictError)) throw e;
      }
    }
    throw new ConnectError(`job_id: ${jobId} keeps changing; retry the cancellation`, Code.Aborted);
  }

  /** Resolves once no job is queued or running (tests, drain). */
  async idle(): Promise<void> {
    while (this.pumping) await this.pumping;
  }

  /**
   * Stops the trainer: no new jobs; a running job stops before its next step and stays RUNNING in KV
   * (a later trainer resumes it from its last checkpoint); queued jobs stay QUEUED.
   */
  async close(): Promise<void> {
    this.closed = true;
    this.queue.length = 0;
    const r = this.running;
    if (r) {
      r.stopReason = "shutdown";
      r.abort?.abort();
    }
    await this.idle();
  }

  private pump(): void {
    if (this.pumping || this.closed) return;
    // `.finally` always runs after this assignment, even when the queue is empty.
    this.pumping = this.drain().finally(() => {
      this.pumping = undefined;
    });
  }

  private async drain(): Promise<void> {
    for (;;) {
      const next = this.queue.shift();
      if (!next || this.closed) return;
      await this.execute(next);
    }
  }

  private notify(l: LocalJob): void {
    if (l.listeners.size === 0) return;
    if (l.stopReason === "lost" && !isTerminal(l.job.state)) return;
    const snapshot = clone(JobSchema, l.job);
    for (const fn of l.listeners) fn(snapshot);
  }

  /**
   * Writes the local job to KV with compare-and-set. On a conflict (another trainer took the job over, or
   * cancelled it through KV) the local copy adopts the stored one, the job is stopped, and false is returned.
   * A conflict with a write of this trainer that failed on the wire but landed (a timeout while NATS
   * restarted) is no conflict: the write is made again on the revision it produced.
   */
  private async persist(l: LocalJob): Promise<boolean> {
    if (l.stopReason === "lost") return false;
    l.unconfirmed.push(toBinary(JobSchema, l.job));
    if (l.unconfirmed.length > MAX_UNCONFIRMED) l.unconfirmed.shift();
    try {
      try {
        l.revision = await this.store.update(l.job, l.revision);
      } catch (e) {
        if (!(e instanceof RevisionConflictError)) throw e;
        const s = await this.store.get(l.job.jobId);
        const stored = s && Buffer.from(toBinary(JobSchema, s.job));
        if (!s || !l.unconfirmed.some((u) => stored!.equals(u))) throw e;
        this.opts.logger.info("a job write that had failed on the wire had landed; writing again", {
          jobId: l.job.jobId,
          revision: s.revision,
        });
        l.revision = await this.store.update(l.job, s.revision);
      }
      l.unconfirmed.length = 0;
      return true;
    } catch (e) {
      if (!(e instanceof RevisionConflictError)) throw e;
      l.unconfirmed.length = 0;
      const s = await this.store.get(l.job.jobId);
      if (s) {
        l.job = s.job;
        l.revision = s.revision;
      }
      this.opts.logger.warn("job changed in KV by someone else; this trainer stops it", {
        jobId: l.job.jobId,
        state: s ? JobState[s.job.state] : "deleted",
      });
      l.stopReason = "lost";
      l.abort?.abort();
      this.notify(l);
      return false;
    }
  }

  /** {@link persist} once the progress write in flight is done. */
  private async persistNow(l: LocalJob): Promise<boolean> {
    await l.progressWrite;
    return this.persist(l);
  }

  /** {@link persistNow}, retried while the bus is unreachable (for writes the job cannot go on without). */
  private persistSurely(l: LocalJob, what: string): Promise<boolean> {
    return untilBusAnswers(what, () => this.persistNow(l), {
      logger: this.opts.logger,
      budgetMs: this.busWaitMs,
      signal: l.abort?.signal,
    });
  }

  /**
   * Records a step's progress in KV and publishes job_progress without holding up training. One write is
   * in flight at a time; progress reached meanwhile waits and only the newest is written next (so the last
   * step's progress always goes out). While the bus is away a write fails and is logged, and the next one
   * catches up.
   */
  private writeProgress(l: LocalJob, progress: Omit<ProgressEventInput, "runId" | "jobId">): void {
    l.pendingProgress = progress;
    if (l.progressWrite) return;
    const r = l.resolved;
    l.progressWrite = (async () => {
      try {
        for (let p = l.pendingProgress; p !== undefined; p = l.pendingProgress) {
          l.pendingProgress = undefined;
          try {
            if (!(await this.persist(l))) return;
            await publishProgress(this.opts.bus, { runId: r.runId, jobId: r.jobId, ...p });
          } catch (e) {
            this.opts.logger.warn("progress not recorded (bus unavailable); training goes on", {
              jobId: r.jobId,
              step: p.step,
              error: (e as Error).message,
            });
          }
        }
      } finally {
        l.progressWrite = undefined;
      }
    })();
  }

  private async finish(l: LocalJob, state: JobState, error: string): Promise<void> {
    l.job.state = state;
    l.job.error = error;
    l.job.etaSeconds = 0;
    l.job.updateTime = timestampNow();
    const persisted = await this.persistSurely(l, `job ${l.job.jobId} ${JobState[state]}`);
    this.notify(l);
    if (persisted && isTerminal(state)) {
      // An ended job is never resumed: its training states are garbage now (its checkpoints stay).
      for (const c of l.job.checkpoints) {
        if (c.id === l.job.spec?.outputCheckpointId) continue;
        await this.opts.bus.artifacts.delete(trainingStateArtifact(c.id)).catch((e) =>
          this.opts.logger.warn("could not delete a training state", {
            checkpoint: c.id,
            error: (e as Error).message,
          }),
        );
      }
    }
  }

  /** The intermediate checkpoint a job restarts from (the newest one listed), if any. */
  private resumePoint(job: Job): ResumePoint | undefined {
    let best: CheckpointRef | undefined;
    for (const c of job.checkpoints) {
      if (c.id !== intermediateCheckpointId(job.spec!.outputCheckpointId, Number(c.step))) continue;
      if (!best || c.step > best.step) best = c;
    }
    return best ? { checkpointId: best.id, step: Number(best.step) } : undefined;
  }

  /** Runs a job inside its span (`trainer.job`), so its checkpoint and progress events join its trace. */
  private execute(l: LocalJob): Promise<void> {
    const r = l.resolved;
    const attributes = {
      "idpo.job_id": r.jobId,
      "idpo.job.kind": JobKind[r.kind],
      "idpo.run_id": r.runId,
      "idpo.iteration": r.iteration,
    };
    return withSpan("trainer.job", attributes, () => this.executeJob(l), l.trace);
  }

  /** Runs a job to its end here, or until it is stopped, lost or fails; the job then leaves `running`. */
  private async executeJob(l: LocalJob): Promise<void> {
    this.running = l;
    l.abort = new AbortController();
    try {
      if (l.job.finalCheckpoint) {
        await this.completeStoredFinal(l);
        return;
      }
      const claimed = await this.claim(l);
      if (!claimed) return;
      const outcome = await runJob(l.resolved, claimed.resume, this.runnerDeps(), this.hooks(l));
      await this.recordOutcome(l, outcome);
    } catch (e) {
      await this.recordError(l, e);
    } finally {
      this.release(l);
    }
  }

  /** The write waits of a job: its abort ends them, the bus wait budget bounds them. */
  private busWait(l: LocalJob): { logger: Logger; budgetMs: number; signal?: AbortSignal } {
    return { logger: this.opts.logger, budgetMs: this.busWaitMs, signal: l.abort?.signal };
  }

  /** The job's identity on its run events. */
  private eventBase(l: LocalJob): { runId: string; jobId: string; iteration: number } {
    const r = l.resolved;
    return { runId: r.runId, jobId: r.jobId, iteration: r.iteration };
  }

  /** A job stopped between storing its final checkpoint and being marked done: finishes the bookkeeping. */
  private async completeStoredFinal(l: LocalJob): Promise<void> {
    const checkpoint = l.job.finalCheckpoint!;
    await untilBusAnswers(
      "final checkpoint_published",
      () => publishCheckpoint(this.opts.bus, { ...this.eventBase(l), checkpoint, isFinal: true }),
      this.busWait(l),
    );
    await this.finish(l, JobState.SUCCEEDED, "");
  }

  /**
   * Marks the job RUNNING from its resume point; this write claims it, so a trainer that lost the race gets
   * undefined. A resumed job's checkpoint is published again for whoever follows the run.
   */
  private async claim(l: LocalJob): Promise<{ resume: ResumePoint | undefined } | undefined> {
    const r = l.resolved;
    const resume = this.resumePoint(l.job);
    l.job.state = JobState.RUNNING;
    l.job.step = resume?.step ?? 0;
    l.job.updateTime = timestampNow();
    if (!(await this.persistSurely(l, `job ${r.jobId} RUNNING`))) return undefined;
    this.notify(l);
    if (resume) {
      const ref = l.job.checkpoints.find((c) => c.id === resume.checkpointId)!;
      await publishCheckpoint(this.opts.bus, { ...this.eventBase(l), checkpoint: ref, isFinal: false });
    }
    this.opts.logger.info("job started", {
      jobId: r.jobId,
      kind: JobKind[r.kind],
      fromStep: l.job.step,
      steps: r.training.steps,
    });
    return { resume };
  }

  private runnerDeps(): RunnerDeps {
    return {
      bus: this.opts.bus,
      checkpoints: this.checkpoints,
      dataDir: this.opts.dataDir,
      logger: this.opts.logger,
      spin: this.spin,
      busWaitMs: this.busWaitMs,
      runCheckpointMs: this.opts.runCheckpointMs ?? DEFAULT_RUN_CHECKPOINT_MS,
      trainWorkers: this.opts.trainWorkers,
      spinEngine: this.opts.spinEngine,
    };
  }

  /** How the runner reports to and is steered by this trainer. */
  private hooks(l: LocalJob): RunnerHooks {
    return {
      signal: l.abort!.signal,
      onStep: async (u) => this.recordStep(l, u),
      onCheckpoint: (ref, isFinal) => this.recordCheckpoint(l, ref, isFinal),
    };
  }

  /** A step's metrics to the watchers, and every `progressEvery` steps (and the last) to KV and the bus. */
  private recordStep(l: LocalJob, u: StepUpdate): void {
    const { steps } = l.resolved.training;
    l.job.step = u.step;
    l.job.metrics = u.metrics;
    l.job.etaSeconds = u.etaSeconds;
    l.job.updateTime = timestampNow();
    this.notify(l);
    if (u.step % this.progressEvery === 0 || u.step === steps) {
      l.job.history = appendHistory(l.job.history, u.step, u.metrics);
      this.writeProgress(l, {
        step: u.step,
        totalSteps: steps,
        metrics: u.metrics,
        etaSeconds: u.etaSeconds,
      });
    }
  }

  /**
   * Lists a stored checkpoint in the job, then publishes checkpoint_published. KV first: whoever sees the
   * event finds the checkpoint listed in the job. An intermediate checkpoint is not worth waiting for (the
   * job goes on; the next one is recorded), a final one is.
   */
  private async recordCheckpoint(l: LocalJob, ref: CheckpointRef, isFinal: boolean): Promise<void> {
    l.job.checkpoints = [...l.job.checkpoints.filter((c) => c.id !== ref.id), ref];
    if (isFinal) l.job.finalCheckpoint = ref;
    l.job.updateTime = timestampNow();
    const what = `checkpoint ${ref.id}`;
    if (!(await (isFinal ? this.persistSurely(l, what) : this.persistNow(l)))) {
      throw new Error("job lost while writing a checkpoint");
    }
    this.notify(l);
    const publish = () =>
      publishCheckpoint(this.opts.bus, { ...this.eventBase(l), checkpoint: ref, isFinal });
    await (isFinal ? untilBusAnswers(`${what} published`, publish, this.busWait(l)) : publish());
    this.opts.logger.info("checkpoint published", {
      jobId: l.resolved.jobId,
      checkpoint: ref.id,
      step: Number(ref.step),
      isFinal,
    });
  }

  /** The job's end state from how the runner returned: done, cancelled, or left to be resumed. */
  private async recordOutcome(l: LocalJob, outcome: RunOutcome): Promise<void> {
    const { logger } = this.opts;
    const r = l.resolved;
    if (outcome === "finished") {
      await this.finish(l, JobState.SUCCEEDED, "");
      logger.info("job succeeded", { jobId: r.jobId, checkpoint: r.outputCheckpointId });
    } else if (l.stopReason === "cancel") {
      await this.finish(l, JobState.CANCELLED, "");
      logger.info("job cancelled", { jobId: r.jobId, step: l.job.step });
    } else {
      logger.info("job stopped without finishing; it resumes from its last checkpoint", {
        jobId: r.jobId,
        reason: l.stopReason,
        step: l.job.step,
      });
    }
  }

  /** The job's end state from an error: none when it was stopped or lost, else cancelled or failed. */
  private async recordError(l: LocalJob, e: unknown): Promise<void> {
    const { logger } = this.opts;
    const { jobId } = l.resolved;
    if (l.stopReason === "lost" || l.stopReason === "shutdown") {
      logger.warn("job stopped", { jobId, reason: l.stopReason, error: (e as Error).message });
    } else if (l.stopReason === "cancel") {
      await this.finish(l, JobState.CANCELLED, "");
    } else {
      const message = e instanceof JobInputError ? e.message : `training failed: ${(e as Error).message}`;
      logger.error("job failed", { jobId, error: message });
      await this.finish(l, JobState.FAILED, message).catch((err) =>
        logger.error("could not record the failure", { jobId, error: (err as Error).message }),
      );
    }
  }

  /** The job leaves `running`; one stopped unfinished leaves this trainer (KV is its truth from now). */
  private release(l: LocalJob): void {
    this.running = undefined;
    l.abort = undefined;
    if (!isTerminal(l.job.state) && (l.stopReason === "lost" || l.stopReason === "shutdown")) {
      this.local.delete(l.job.jobId);
      for (const fn of l.listeners) fn(undefined);
    }
    l.settle();
  }
}

/** Creates a trainer on `opts.bus` and (unless `opts.resume` is false) resumes the unfinished jobs it finds. */
export async function createJobManager(opts: JobManagerOptions): Promise<JobManager> {
  const m = new JobManager(opts);
  if (opts.resume ?? true) await m.resumeStored();
  return m;
}
