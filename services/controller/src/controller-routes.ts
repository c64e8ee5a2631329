import { randomBytes } from "node:crypto";
import { create, equals } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import type { Bus } from "@idpo/bus";
import type { CheckpointStore } from "@idpo/mesh";
import {
  type CancelRunRequest,
  ControllerService,
  type CreateRunRequest,
  type GetEvaluationSamplesRequest,
  type GetIterationPairsRequest,
  type GetRunRequest,
  type ListRunsRequest,
  ProgressSchema,
  type Run,
  type RunConfig,
  RunConfigSchema,
  RunSchema,
  RunStage,
  RunState,
  runStateEnded,
  type WatchRunRequest,
} from "@idpo/proto";
import { type Logger, pageNewestFirst, timestampNanos } from "@idpo/runtime";
import type { Peers } from "./driver-deps.js";
import { checkRunId, validateRunConfig } from "./run-config.js";
import { publishRunState } from "./run-events.js";
import { evaluationSamples, iterationPairs } from "./run-images.js";
import type { RunManager } from "./run-manager.js";
import { jobIds } from "./run-plan.js";
import type { RunStore } from "./run-store.js";

/** What the Controller's RPCs work with. */
export interface ControllerRoutesDeps {
  store: RunStore;
  bus: Bus;
  manager: RunManager;
  peers: Peers;
  checkpoints: CheckpointStore;
  logger: Logger;
  /** Ends WatchRun streams when the service shuts down. */
  shutdownSignal: AbortSignal;
}

function generateRunId(): string {
  return `run-${Date.now().toString(36)}-${randomBytes(3).toString("hex")}`;
}

/** The trainer job a run is waiting for in `stage`, if any. */
function currentJob(run: Run, stage: RunStage): string | undefined {
  switch (stage) {
    case RunStage.BASE:
      return run.config?.baseCheckpointId ? undefined : jobIds.base(run.runId);
    case RunStage.IMPROVER:
      return run.config?.improverCheckpointId ? undefined : jobIds.improver(run.runId);
    case RunStage.TRAIN:
      return jobIds.iteration(run.runId, run.iteration);
    default:
      return undefined;
  }
}

/**
 * Whether a stored run's config equals a validated request config. The stored one is validated again
 * first, so a run created before a field gained a default still matches the same request.
 */
function sameConfig(stored: RunConfig | undefined, config: RunConfig): boolean {
  let current: RunConfig;
  try {
    current = validateRunConfig(stored);
  } catch {
    return false;
  }
  return equals(RunConfigSchema, current, config);
}

/** A stored run; NOT_FOUND naming the id when there is none. */
async function loadRun(store: RunStore, runId: string): Promise<Run> {
  checkRunId(runId);
  const cur = await store.get(runId);
  if (!cur) throw new ConnectError(`run_id: no run ${JSON.stringify(runId)}`, Code.NotFound);
  return cur.run;
}

function differentConfig(runId: string): ConnectError {
  return new ConnectError(`run_id: run ${runId} already exists with a different config`, Code.AlreadyExists);
}

/** FAILED_PRECONDITION naming the field when a checkpoint the config names is not in the artifact store. */
async function checkNamedCheckpoints(checkpoints: CheckpointStore, config: RunConfig): Promise<void> {
  const refs: [string, string][] = [
    ["config.base_checkpoint_id", config.baseCheckpointId],
    ["config.improver_checkpoint_id", config.improverCheckpointId],
    ["config.start_checkpoint_id", config.startCheckpointId],
  ];
  for (const [field, id] of refs) {
    if (id !== "" && !(await checkpoints.ref(id))) {
      throw new ConnectError(
        `${field}: checkpoint ${id} is not in the artifact store`,
        Code.FailedPrecondition,
      );
    }
  }
}

/**
 * CreateRun: validates the config and the checkpoints it names, stores the run PENDING and starts driving
 * it; a run of the same id and config is returned as it is (and driven here if unfinished).
 */
async function createRun(deps: ControllerRoutesDeps, req: CreateRunRequest): Promise<{ run: Run }> {
  const { store, bus, manager, logger } = deps;
  const runId = req.runId === "" ? generateRunId() : req.runId;
  checkRunId(runId);
  const config = validateRunConfig(req.config);
  const existing = await store.get(runId);
  if (existing) {
    if (!sameConfig(existing.run.config, config)) throw differentConfig(runId);
    if (!req.validateOnly && !runStateEnded(existing.run.state)) manager.drive(runId);
    return { run: existing.run };
  }
  await checkNamedCheckpoints(deps.checkpoints, config);
  if (req.validateOnly) {
    return { run: create(RunSchema, { runId: req.runId, config, state: RunState.PENDING }) };
  }
  const now = timestampNow();
  const run = create(RunSchema, {
    runId,
    config,
    state: RunState.PENDING,
    stage: RunStage.UNSPECIFIED,
    createTime: now,
    updateTime: now,
    progress: create(ProgressSchema, { message: "pending" }),
  });
  const res = await store.create(run);
  if (res.created) {
    logger.info("run created", { runId, method: config.method, iterations: config.iterations });
    await publishRunState(bus, res.run);
  } else if (!sameConfig(res.run.config, config)) {
    throw differentConfig(runId);
  }
  if (!runStateEnded(res.run.state)) manager.drive(runId);
  return { run: res.run };
}

/** CancelRun: marks an unfinished run CANCELLED, stops its driver and cancels the trainer job it waits for. */
async function cancelRun(deps: ControllerRoutesDeps, req: CancelRunRequest): Promise<{ run: Run }> {
  const { store, bus, manager, peers, logger } = deps;
  await loadRun(store, req.runId);
  let stageBefore = RunStage.UNSPECIFIED;
  const res = await store.mutate(req.runId, (r) => {
    if (runStateEnded(r.state)) return false;
    stageBefore = r.stage;
    r.state = RunState.CANCELLED;
    r.stage = RunStage.UNSPECIFIED;
    r.progress = create(ProgressSchema, { message: "cancelled" });
    return true;
  });
  if (!res.changed) return { run: res.run };
  logger.info("run cancelled", { runId: req.runId, stage: RunStage[stageBefore] });
  manager.stop(req.runId, "cancelled");
  await publishRunState(bus, res.run);
  const jobId = currentJob(res.run, stageBefore);
  if (jobId) {
    try {
      await peers.trainer.cancelJob({ jobId }, { timeoutMs: 10_000 });
    } catch (err) {
      // The run is cancelled either way; a job that is unknown or already over needs nothing.
      logger.warn("could not cancel the run's trainer job", {
        runId: req.runId,
        jobId,
        error: (err as Error).message,
      });
    }
  }
  return { run: res.run };
}

/** WatchRun: the run now and after every change, until the call or the service ends. */
async function* watchRun(deps: ControllerRoutesDeps, req: WatchRunRequest, ctx: HandlerContext) {
  const { store, shutdownSignal } = deps;
  await loadRun(store, req.runId);
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  ctx.signal.addEventListener("abort", onAbort, { once: true });
  shutdownSignal.addEventListener("abort", onAbort, { once: true });
  try {
    if (ctx.signal.aborted || shutdownSignal.aborted) return;
    for await (const { run } of store.watch(req.runId, stop.signal)) yield { run };
  } finally {
    ctx.signal.removeEventListener("abort", onAbort);
    shutdownSignal.removeEventListener("abort", onAbort);
  }
}

/** The ControllerService implementation. */
export function controllerRoutes(deps: ControllerRoutesDeps) {
  const { store, bus } = deps;
  return (router: ConnectRouter) =>
    router.service(ControllerService, {
      createRun: (req: CreateRunRequest) => createRun(deps, req),
      getRun: async (req: GetRunRequest) => ({ run: await loadRun(store, req.runId) }),
      async listRuns(req: ListRunsRequest) {
        const runs = await store.list();
        const page = pageNewestFirst(
          runs,
          (r) => ({ createNanos: timestampNanos(r.createTime), id: r.runId }),
          req,
        );
        return { runs: page.items, nextPageToken: page.nextPageToken };
      },
      watchRun: (req: WatchRunRequest, ctx: HandlerContext) => watchRun(deps, req, ctx),
      cancelRun: (req: CancelRunRequest) => cancelRun(deps, req),
      getIterationPairs: async (req: GetIterationPairsRequest) =>
        iterationPairs(bus, await loadRun(store, req.runId), req),
      getEvaluationSamples: async (req: GetEvaluationSamplesRequest) =>
        evaluationSamples(bus, await loadRun(store, req.runId), req),
    });
}
