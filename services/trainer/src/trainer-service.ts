import { resolve } from "node:path";
import { create } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  type HandlerContext,
  type Transport,
} from "@connectrpc/connect";
import type { Bus } from "@idpo/bus";
import { defaultTrainWorkers, initBackend } from "@idpo/diffusion";
import {
  CheckpointStore,
  INFERENCE_MODES,
  type InferenceMode,
  samplingEngineFromEnv,
  sharedBus,
} from "@idpo/mesh";
import {
  CancelJobResponseSchema,
  GetJobResponseSchema,
  ListJobsResponseSchema,
  StartJobResponseSchema,
  TrainerService,
  WatchJobResponseSchema,
} from "@idpo/proto";
import { ConfigError, envEnum, envInt, envString, type ServiceDefinition } from "@idpo/runtime";
import { createJobManager, type JobManager, type JobManagerOptions } from "./job-manager.js";

/** Trainer settings read from the environment. */
export interface TrainerEnvConfig {
  /** Cache of generated datasets (IDPO_DATA_DIR, default ./.idpo). */
  dataDir: string;
  /** SPIN loser sampling: denoising steps (IDPO_TRAINER_SPIN_STEPS, default 20). */
  spinSteps: number;
  /** SPIN loser sampling: guidance scale (IDPO_TRAINER_SPIN_GUIDANCE, default 3.0). */
  spinGuidance: number;
  /** KV progress writes and job_progress events every N steps (IDPO_TRAINER_PROGRESS_EVERY, default 10). */
  progressEvery: number;
  /** A run's job with checkpoint_every 0 checkpoints after this much training, ms
   * (IDPO_TRAINER_RUN_CHECKPOINT_MINUTES, default 5; 0 = only at the end). */
  runCheckpointMs: number;
  /**
   * Data-parallel worker threads per job (IDPO_TRAIN_WORKERS, 1–64); 0 (the default) picks
   * defaultTrainWorkers for the backend once it is initialised.
   */
  trainWorkers: number;
  /**
   * Where SPIN samples its losers (IDPO_INFERENCE): "in-process" (default) with tfjs on the reference the
   * job loaded, or "sidecar", through the inference sidecar at IDPO_INFERENCE_ADDR as the Generator does.
   */
  spinInference: InferenceMode;
}

/** Reads the trainer's environment variables (errors name the variable). */
export function trainerEnvConfig(env: Record<string, string | undefined>): TrainerEnvConfig {
  const guidance = envString(env, "IDPO_TRAINER_SPIN_GUIDANCE") ?? "3.0";
  const g = Number(guidance);
  if (!/^-?\d+(\.\d+)?$/.test(guidance) || !Number.isFinite(g) || g < 0 || g > 100) {
    throw new ConfigError(
      "IDPO_TRAINER_SPIN_GUIDANCE",
      `IDPO_TRAINER_SPIN_GUIDANCE=${JSON.stringify(guidance)} is not valid: expected a number in [0, 100]`,
    );
  }
  return {
    dataDir: resolve(envString(env, "IDPO_DATA_DIR") ?? "./.idpo"),
    spinSteps: envInt(env, "IDPO_TRAINER_SPIN_STEPS", 20, 1, 1000),
    spinGuidance: g,
    progressEvery: envInt(env, "IDPO_TRAINER_PROGRESS_EVERY", 10, 1, 1_000_000),
    runCheckpointMs: envInt(env, "IDPO_TRAINER_RUN_CHECKPOINT_MINUTES", 5, 0, 10_080) * 60_000,
    trainWorkers: envInt(env, "IDPO_TRAIN_WORKERS", 0, 0, 64),
    spinInference: envEnum(env, "IDPO_INFERENCE", "in-process", INFERENCE_MODES),
  };
}

/**
 * The TrainerService RPCs over a trainer that may still be starting (`getTrainer` rejects or resolves
 * undefined until it is ready: calls then fail with UNAVAILABLE). `shutdownSignal` ends WatchJob streams.
 */
export function trainerRoutes(getTrainer: () => JobManager | undefined, shutdownSignal?: AbortSignal) {
  const ready = (): JobManager => {
    const t = getTrainer();
    if (!t)
      throw new ConnectError("the trainer is starting (backend and bus not ready yet)", Code.Unavailable);
    return t;
  };
  return (router: ConnectRouter) =>
    router.service(TrainerService, {
      async startJob(req) {
        if (!req.spec) throw new ConnectError("spec: required", Code.InvalidArgument);
        return create(StartJobResponseSchema, { job: await ready().startJob(req.spec) });
      },
      async getJob(req) {
        if (req.jobId === "") throw new ConnectError("job_id: required", Code.InvalidArgument);
        return create(GetJobResponseSchema, { job: await ready().getJob(req.jobId) });
      },
      async listJobs(req) {
        const page = await ready().listJobs(req);
        return create(ListJobsResponseSchema, page);
      },
      async *watchJob(req, ctx: HandlerContext) {
        if (req.jobId === "") throw new ConnectError("job_id: required", Code.InvalidArgument);
        const trainer = ready();
        const signal = shutdownSignal ? AbortSignal.any([ctx.signal, shutdownSignal]) : ctx.signal;
        for await (const job of trainer.watchJob(req.jobId, signal)) {
          yield create(WatchJobResponseSchema, { job });
        }
      },
      async cancelJob(req) {
        if (req.jobId === "") throw new ConnectError("job_id: required", Code.InvalidArgument);
        return create(CancelJobResponseSchema, { job: await ready().cancelJob(req.jobId) });
      },
    });
}

/**
 * Starts the tfjs backend and a trainer with the given dependencies (what the service and tests share).
 * `trainWorkers` 0 picks defaultTrainWorkers for the backend; undefined trains in this thread.
 */
export async function startJobManager(opts: JobManagerOptions): Promise<JobManager> {
  const info = await initBackend();
  const trainWorkers = opts.trainWorkers === 0 ? defaultTrainWorkers(info) : opts.trainWorkers;
  return createJobManager({ ...opts, trainWorkers });
}

/** Dependencies a test (or an embedding program) can supply instead of the process-wide ones. */
export interface TrainerOverrides {
  /** Bus for jobs, events and artifacts; default the process-wide `sharedBus()`. */
  bus?: Bus;
  /** Transport to the inference sidecar (IDPO_INFERENCE=sidecar); default one to IDPO_INFERENCE_ADDR. */
  inferenceTransport?: Transport;
}

/**
 * The Trainer's service definition, optionally over given dependencies. SERVING once the tfjs backend is
 * initialised and the bus is open; unfinished jobs found in KV resume.
 */
export function trainerDefinition(overrides: TrainerOverrides = {}): ServiceDefinition {
  return {
    name: "trainer",
    defaultPort: 50053,
    grpcServices: [TrainerService.typeName],
    create(ctx) {
      const config = trainerEnvConfig(ctx.env);
      let trainer: JobManager | undefined;
      let closeEngine = () => {};
      let failed = false;
      const starting = (async () => {
        const bus = overrides.bus ?? (await sharedBus());
        let spinEngine: JobManagerOptions["spinEngine"];
        if (config.spinInference === "sidecar") {
          const e = await samplingEngineFromEnv(ctx.env, {
            checkpoints: new CheckpointStore(bus.artifacts),
            inferenceTransport: overrides.inferenceTransport,
            logger: ctx.logger,
          });
          spinEngine = e.engine;
          closeEngine = e.close;
        }
        trainer = await startJobManager({
          bus,
          logger: ctx.logger,
          dataDir: config.dataDir,
          spin: { steps: config.spinSteps, guidanceScale: config.spinGuidance },
          progressEvery: config.progressEvery,
          runCheckpointMs: config.runCheckpointMs,
          trainWorkers: config.trainWorkers,
          spinEngine,
        });
        ctx.setServing(true);
      })().catch((e) => {
        failed = true;
        ctx.logger.error("trainer failed to start", { error: (e as Error).message });
      });
      return {
        routes: trainerRoutes(() => {
          if (failed)
            throw new ConnectError("the trainer failed to start; see its log", Code.FailedPrecondition);
          return trainer;
        }, ctx.shutdownSignal),
        async close() {
          await starting;
          await trainer?.close();
          closeEngine();
        },
      };
    },
  };
}

/** The Trainer (idpo.trainer.v1.TrainerService, port 50053): training jobs on the process-wide bus. */
export const trainerService: ServiceDefinition = trainerDefinition();
