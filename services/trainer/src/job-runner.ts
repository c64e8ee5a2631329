import type { Bus } from "@idpo/bus";
import {
  type CaptionedBatch,
  cloneModel,
  createModel,
  DataParallelTrainer,
  type DiffusionModel,
  type DpoOptions,
  decodeCheckpoint,
  dpoObjective,
  encodeCheckpoint,
  improverFromPolicy,
  improverObjective,
  type Objective,
  type PreferenceBatch,
  preset,
  pretrainObjective,
  Rng,
  readCheckpointMetadata,
  type SpinBatch,
  sample,
  sftObjective,
  spinObjective,
  Trainer,
  type TrainerConfig,
  type TrainingDriver,
} from "@idpo/diffusion";
import type { CheckpointStore, SamplingEngine, ServedModel } from "@idpo/mesh";
import { type CheckpointRef, JobKind, ModelKind } from "@idpo/proto";
import type { Logger } from "@idpo/runtime";
import { untilBusAnswers } from "./bus-wait.js";
import {
  type Example,
  type ExampleBatch,
  ExampleStream,
  type ExampleUnit,
  stackExamples,
  takeExamples,
} from "./example-stream.js";
import { intermediateCheckpointId, type ResolvedJob } from "./job-spec.js";
import { openPairSources } from "./pair-sources.js";
import {
  encodeTrainingState,
  saveTrainingState,
  TrainingState,
  trainingStateArtifact,
} from "./training-state.js";

/** How SPIN samples its losers from the reference (the run's sampler settings). */
export interface SpinSamplerSettings {
  /** Denoising steps (default 20). */
  steps: number;
  /** Classifier-free guidance scale (default 3.0). */
  guidanceScale: number;
}

/** What a job runner needs from the trainer process. */
export interface RunnerDeps {
  bus: Bus;
  checkpoints: CheckpointStore;
  /** Where shapes datasets are cached. */
  dataDir: string;
  logger: Logger;
  spin: SpinSamplerSettings;
  /**
   * Where SPIN samples its losers: absent, with tfjs in this process on the reference the job loaded; an
   * engine (the inference sidecar, IDPO_INFERENCE=sidecar) samples the reference checkpoint through it, the
   * same images within the sidecar's tolerance, on a faster engine.
   */
  spinEngine?: SamplingEngine;
  /** How long the final checkpoint waits for an unreachable bus, ms. */
  busWaitMs: number;
  /** A job of a run with checkpoint_every 0 writes an intermediate checkpoint after this much training
   * since its last one, ms (0 = never): a crash then loses at most this much of a long job. */
  runCheckpointMs: number;
  /**
   * Data-parallel worker threads per job (default 1: train in this thread). Above 1, each step's
   * microbatches are split over that many workers with one compute thread each.
   */
  trainWorkers?: number;
}

/** One finished optimiser step. */
export interface StepUpdate {
  step: number;
  /** Objective metrics (loss, raw_model_loss, ref_loss, implicit_acc, ...) plus lr and grad_norm. */
  metrics: Record<string, number>;
  /** Estimated seconds to completion. */
  etaSeconds: number;
}

/** Callbacks through which the runner reports and is steered. */
export interface RunnerHooks {
  /** After every step (awaited: persistence and watchers run here). */
  onStep(update: StepUpdate): Promise<void>;
  /** After a checkpoint (and, for an intermediate one, its training state) is stored. */
  onCheckpoint(ref: CheckpointRef, isFinal: boolean): Promise<void>;
  /** Aborted to stop the job before its next step (cancel, shutdown, lost ownership). */
  signal: AbortSignal;
}

/** Where a resumed job continues. */
export interface ResumePoint {
  /** The intermediate checkpoint whose training state is loaded. */
  checkpointId: string;
  step: number;
}

/** How a run ended: all steps done, or stopped early through the signal. */
export type RunOutcome = "finished" | "stopped";

/** Raised for problems with the job's inputs (checkpoint kinds, sizes, architectures) at run time. */
export class JobInputError extends Error {
  override readonly name = "JobInputError";
}

/** Streams of SPIN's per-example sampling seeds, far from the data and training streams. */
const SPIN_SEED_STREAM_BASE = 2 ** 41;

/** What one example of each job kind is. */
function unitOf(kind: JobKind): ExampleUnit {
  switch (kind) {
    case JobKind.PRETRAIN:
      return "images";
    case JobKind.SFT:
    case JobKind.SPIN:
      return "winners";
    default:
      return "pairs";
  }
}

async function loadCheckpoint(
  store: CheckpointStore,
  id: string,
  field: string,
  trainable: boolean,
): Promise<{ model: DiffusionModel; contentHash: string }> {
  const got = await store.get(id);
  if (!got) throw new JobInputError(`${field}: checkpoint ${JSON.stringify(id)} not found`);
  try {
    const { model, metadata } = decodeCheckpoint(got.bytes, { trainable });
    return { model, contentHash: metadata.contentHash };
  } catch (e) {
    throw new JobInputError(
      `${field}: checkpoint ${JSON.stringify(id)} is unreadable (${(e as Error).message})`,
    );
  }
}

function sameArchitecture(a: DiffusionModel, b: DiffusionModel): boolean {
  return JSON.stringify(a.config) === JSON.stringify(b.config);
}

/** The models a job trains and compares against. */
interface JobModels {
  /** The trained model. */
  model: DiffusionModel;
  /** DPO/SPIN: the frozen reference (SPIN: also the loser sampler). */
  reference?: DiffusionModel;
  /** Content hash of the init checkpoint (lineage), null for a fresh initialisation. */
  parentHash: string | null;
}

async function loadModels(job: ResolvedJob, store: CheckpointStore): Promise<JobModels> {
  const owned: DiffusionModel[] = [];
  try {
    let model: DiffusionModel;
    let parentHash: string | null = null;
    if (job.initCheckpointId === "") {
      model = createModel(preset(job.modelPreset), job.training.seed);
      owned.push(model);
    } else {
      const init = await loadCheckpoint(store, job.initCheckpointId, "spec.init_checkpoint_id", true);
      owned.push(init.model);
      parentHash = init.contentHash;
      model = init.model;
      if (job.kind === JobKind.IMPROVER) {
        if (model.kind === "policy") {
          model = improverFromPolicy(init.model);
          owned.push(model);
        }
      } else if (model.kind !== "policy") {
        throw new JobInputError(
          `spec.init_checkpoint_id: ${job.initCheckpointId} is an improvement model; ${JobKind[job.kind]} trains a text-to-image policy`,
        );
      }
    }
    let reference: DiffusionModel | undefined;
    if (job.kind === JobKind.DPO || job.kind === JobKind.SPIN) {
      const ref = await loadCheckpoint(
        store,
        job.referenceCheckpointId,
        "spec.reference_checkpoint_id",
        false,
      );
      owned.push(ref.model);
      reference = ref.model;
      if (reference.kind !== "policy") {
        throw new JobInputError(
          `spec.reference_checkpoint_id: ${job.referenceCheckpointId} is an improvement model; the reference must be a policy`,
        );
      }
      if (!sameArchitecture(model, reference)) {
        throw new JobInputError(
          `spec.reference_checkpoint_id: ${job.referenceCheckpointId} has another architecture than spec.init_checkpoint_id`,
        );
      }
    }
    // Keep only what the job uses (a widened policy is no longer needed).
    for (const m of owned) if (m !== model && m !== reference) m.dispose();
    return { model, reference, parentHash };
  } catch (e) {
    for (const m of owned) m.dispose();
    throw e;
  }
}

/** The preference loss's settings of a resolved job (the contract has filled every default). */
function preferenceOptions(t: ResolvedJob["training"]): DpoOptions {
  return { beta: t.beta, sftWeight: t.sftWeight, dpoPositiveLambda: t.dpoPositiveLambda };
}

/** The batch a job kind's objective takes, built from one microbatch of examples. */
type BatchBuilder = (b: ExampleBatch, signal: AbortSignal) => Promise<unknown>;

function objectiveFor(
  job: ResolvedJob,
  m: JobModels,
  spin: SpinSamplerSettings,
  served?: ServedModel,
): [Objective<unknown>, BatchBuilder] {
  const t = job.training;
  switch (job.kind) {
    case JobKind.PRETRAIN:
    case JobKind.SFT: {
      const objective =
        job.kind === JobKind.PRETRAIN
          ? pretrainObjective(m.model, t.promptDropout)
          : sftObjective(m.model, t.promptDropout);
      const build: BatchBuilder = async (b) =>
        ({ prompts: b.prompts, images: b.images }) satisfies CaptionedBatch;
      return [objective as Objective<unknown>, build];
    }
    case JobKind.IMPROVER: {
      const objective = improverObjective(m.model, {
        tasks: {
          improve: t.improveTaskProbability,
          reconstruct: t.reconstructTaskProbability,
          // Written as the remainder so the three always sum to 1 exactly.
          unconditional: Math.max(0, 1 - t.improveTaskProbability - t.reconstructTaskProbability),
        },
      });
      const build: BatchBuilder = async (b) =>
        ({ prompts: b.prompts, winners: b.images, losers: b.losers! }) satisfies PreferenceBatch;
      return [objective as Objective<unknown>, build];
    }
    case JobKind.DPO: {
      const objective = dpoObjective(m.model, m.reference!, preferenceOptions(t));
      const build: BatchBuilder = async (b) =>
        ({ prompts: b.prompts, winners: b.images, losers: b.losers! }) satisfies PreferenceBatch;
      return [objective as Objective<unknown>, build];
    }
    case JobKind.SPIN: {
      const reference = m.reference!;
      const objective = spinObjective(m.model, reference, preferenceOptions(t));
      const build: BatchBuilder = async (b, signal) => {
        // The loser of dataset example i is always the reference's sample with seed i's seed: the same
        // prompt gets the same loser in every epoch and after a restart, as if generated up front.
        const seeds = b.indices.map((i) => new Rng(t.seed, SPIN_SEED_STREAM_BASE + i).nextUint32());
        const opts = {
          prompts: b.prompts,
          seeds,
          steps: spin.steps,
          guidanceScale: spin.guidanceScale,
          signal,
        };
        const generated = served ? await served.sample(opts) : await sample(reference, opts);
        return { prompts: b.prompts, real: b.images, generated } satisfies SpinBatch;
      };
      return [objective as Objective<unknown>, build];
    }
    default:
      throw new JobInputError(`spec.kind: ${job.kind} is not a job kind`);
  }
}

/**
 * Runs (or resumes) one training job to its end or until `hooks.signal` aborts: loads the models,
 * opens the data, trains with the diffusion library's driver (accumulation, clipping, warmup, AdamW,
 * EMA), writes intermediate checkpoints with their training state and the final checkpoint.
 * Everything it allocates is released before it returns.
 */
export async function runJob(
  job: ResolvedJob,
  resume: ResumePoint | undefined,
  deps: RunnerDeps,
  hooks: RunnerHooks,
): Promise<RunOutcome> {
  const t = job.training;
  const sources = await openPairSources(job.data, { artifacts: deps.bus.artifacts, dataDir: deps.dataDir });
  const stream = new ExampleStream(sources, unitOf(job.kind), { seed: t.seed });
  const models = await loadModels(job, deps.checkpoints);
  const { model } = models;
  let trainer: TrainingDriver<unknown> | undefined;
  let served: ServedModel | undefined;
  try {
    if (sources[0].size !== model.imageSize) {
      throw new JobInputError(
        `spec.data: images are ${sources[0].size}x${sources[0].size} but the model works on ${model.imageSize}x${model.imageSize}`,
      );
    }
    const engine = job.kind === JobKind.SPIN ? deps.spinEngine : undefined;
    if (engine) served = (await engine.load(job.referenceCheckpointId, "policy")).model;
    const [objective, build] = objectiveFor(job, models, { ...deps.spin, ...job.spinSampler }, served);
    const state = await resumedState(job, resume, deps);
    trainer = await startTrainer(job, model, objective, deps.trainWorkers ?? 1);
    let step = 0;
    if (state && resume) {
      state.apply(trainer);
      step = state.step;
      deps.logger.info("job resumed", { jobId: job.jobId, step, checkpoint: resume.checkpointId });
    }
    const loop: TrainLoop = { job, models, trainer, build, stream, deps, hooks };
    const trained = await trainSteps(loop, step, resume?.checkpointId);
    if (trained === "stopped") return "stopped";
    await finishJob(loop, trained.step, trained.lastState);
    return "finished";
  } finally {
    await trainer?.dispose();
    served?.dispose();
    model.dispose();
    models.reference?.dispose();
  }
}

/** The training state a resumed job continues from (its step checked against the resume point). */
async function resumedState(
  job: ResolvedJob,
  resume: ResumePoint | undefined,
  deps: RunnerDeps,
): Promise<TrainingState | undefined> {
  if (!resume) return undefined;
  const bytes = await deps.bus.artifacts.get(trainingStateArtifact(resume.checkpointId));
  if (!bytes) throw new Error(`training state of ${resume.checkpointId} is missing; cannot resume`);
  const state = new TrainingState(bytes, job.jobId);
  if (state.step !== resume.step) {
    throw new Error(
      `training state of ${resume.checkpointId} is at step ${state.step}, expected ${resume.step}`,
    );
  }
  return state;
}

/** The optimiser driver of the job: in this thread, or data-parallel over `workers` worker threads. */
async function startTrainer(
  job: ResolvedJob,
  model: DiffusionModel,
  objective: Objective<unknown>,
  workers: number,
): Promise<TrainingDriver<unknown>> {
  const t = job.training;
  const config: TrainerConfig = {
    schedule: t.schedule,
    adam: { weightDecay: t.weightDecay },
    maxGradNorm: t.maxGradNorm,
    emaDecay: t.emaDecay > 0 ? t.emaDecay : undefined,
    seed: t.seed,
  };
  return workers > 1
    ? await DataParallelTrainer.start(model.params, objective, config, { workers })
    : new Trainer<unknown>(model.params, objective, config);
}

/** What the training loop of one job works with. */
interface TrainLoop {
  job: ResolvedJob;
  models: JobModels;
  trainer: TrainingDriver<unknown>;
  build: BatchBuilder;
  stream: ExampleStream;
  deps: RunnerDeps;
  hooks: RunnerHooks;
}

/**
 * Trains from `step` to the job's last step, reporting each step and writing the intermediate checkpoints
 * that are due; `lastState` is the checkpoint whose training state is stored (the resume point). Returns the
 * step reached and the newest stored training state, or "stopped" when the signal aborted.
 */
async function trainSteps(
  loop: TrainLoop,
  step: number,
  lastState: string | undefined,
): Promise<{ step: number; lastState: string | undefined } | "stopped"> {
  const { job, trainer, deps, hooks } = loop;
  const t = job.training;
  const micro = t.batchSize / t.gradientAccumulation;
  const examples = loop.stream.from(step * t.batchSize)[Symbol.asyncIterator]();
  const started = performance.now();
  const startStep = step;
  let lastCheckpointAt = performance.now();
  try {
    while (step < t.steps) {
      if (hooks.signal.aborted) return "stopped";
      const batches = await buildBatches(loop, examples, micro);
      if (batches === "stopped" || hooks.signal.aborted) return "stopped";
      const report = await trainer.step(batches);
      step = report.step;
      const perStep = (performance.now() - started) / 1000 / (step - startStep);
      const metrics: Record<string, number> = {
        ...report.metrics,
        lr: report.lr,
        grad_norm: report.gradNorm,
      };
      await hooks.onStep({ step, metrics, etaSeconds: perStep * (t.steps - step) });
      const due =
        t.checkpointEvery > 0
          ? step % t.checkpointEvery === 0
          : job.runId !== "" &&
            deps.runCheckpointMs > 0 &&
            performance.now() - lastCheckpointAt >= deps.runCheckpointMs;
      if (due && step < t.steps) {
        lastCheckpointAt = performance.now();
        const saved = await saveIntermediate(loop, step, lastState);
        if (saved === "stopped") return "stopped";
        lastState = saved.lastState;
      }
      // Let RPCs, watchers and timers run between steps.
      await new Promise<void>((r) => setImmediate(r));
    }
  } finally {
    await examples.return?.(undefined);
  }
  return { step, lastState };
}

/** The step's microbatches (gradient accumulation), built from the next examples; "stopped" when aborted. */
async function buildBatches(
  loop: TrainLoop,
  examples: AsyncIterator<Example>,
  micro: number,
): Promise<unknown[] | "stopped"> {
  const { job, hooks } = loop;
  const unit = unitOf(job.kind);
  const batches: unknown[] = [];
  for (let j = 0; j < job.training.gradientAccumulation; j++) {
    const ex = stackExamples(await takeExamples(examples, micro), unit);
    try {
      batches.push(await loop.build(ex, hooks.signal));
    } catch (e) {
      if (hooks.signal.aborted) return "stopped";
      throw e;
    }
  }
  return batches;
}

/**
 * Writes the intermediate checkpoint of `step` with its training state and drops the previous state; with
 * the bus away it is skipped (training goes on). Returns the newest stored training state.
 */
async function saveIntermediate(
  loop: TrainLoop,
  step: number,
  lastState: string | undefined,
): Promise<{ lastState: string | undefined } | "stopped"> {
  const { job, models, trainer, deps, hooks } = loop;
  const id = intermediateCheckpointId(job.outputCheckpointId, step);
  let newest = lastState;
  try {
    await saveTrainingState(deps.bus.artifacts, id, encodeTrainingState(trainer, { jobId: job.jobId, step }));
    const ref = await writeCheckpoint(job, models, trainer, id, step, deps.checkpoints);
    await hooks.onCheckpoint(ref, false);
    // Only the newest training state is needed to resume.
    newest = id;
    if (lastState !== undefined) await deps.bus.artifacts.delete(trainingStateArtifact(lastState));
  } catch (e) {
    if (hooks.signal.aborted) return "stopped";
    // The bus is away: training goes on, and the next intermediate checkpoint is the resume point.
    deps.logger.warn("intermediate checkpoint skipped", {
      jobId: job.jobId,
      checkpoint: id,
      error: (e as Error).message,
    });
  }
  return { lastState: newest };
}

/** Writes the final checkpoint (waiting out an unreachable bus) and deletes the last training state. */
async function finishJob(loop: TrainLoop, step: number, lastState: string | undefined): Promise<void> {
  const { job, models, trainer, deps, hooks } = loop;
  const ref = await untilBusAnswers(
    `final checkpoint ${job.outputCheckpointId}`,
    () => writeCheckpoint(job, models, trainer, job.outputCheckpointId, step, deps.checkpoints),
    { logger: deps.logger, budgetMs: deps.busWaitMs, signal: hooks.signal },
  );
  await hooks.onCheckpoint(ref, true);
  if (lastState === undefined) return;
  const state = trainingStateArtifact(lastState);
  await deps.bus.artifacts.delete(state).catch((e) =>
    deps.logger.warn("could not delete a training state", {
      artifact: state,
      error: (e as Error).message,
    }),
  );
}

/**
 * Stores checkpoint `id` (the EMA weights when an EMA is kept, else the trained weights) with lineage:
 * the safetensors metadata's parent is the init checkpoint's content hash, and its extra entries name the
 * parent id, job, run and iteration; the CheckpointRef's parent_id is the init checkpoint id.
 */
async function writeCheckpoint(
  job: ResolvedJob,
  models: JobModels,
  trainer: TrainingDriver<unknown>,
  id: string,
  step: number,
  store: CheckpointStore,
): Promise<CheckpointRef> {
  const extra = {
    checkpoint_id: id,
    parent_id: job.initCheckpointId,
    job_id: job.jobId,
    job_kind: JobKind[job.kind],
    run_id: job.runId,
    iteration: String(job.iteration),
    ema: trainer.ema ? "1" : "0",
  };
  let bytes: Uint8Array;
  if (trainer.ema) {
    const averaged = cloneModel(models.model, { trainable: false });
    try {
      trainer.ema.copyTo(averaged.params);
      bytes = encodeCheckpoint(averaged, { step, parent: models.parentHash, extra });
    } finally {
      averaged.dispose();
    }
  } else {
    bytes = encodeCheckpoint(models.model, { step, parent: models.parentHash, extra });
  }
  const meta = readCheckpointMetadata(bytes);
  return store.put(
    {
      id,
      kind: models.model.kind === "improver" ? ModelKind.IMPROVER : ModelKind.POLICY,
      step,
      parentId: job.initCheckpointId,
      sha256: meta.contentHash.replace(/^sha256:/, ""),
    },
    bytes,
  );
}
