import type { CheckpointRef, Run, RunConfig } from "@idpo/proto";
import { RunStage } from "@idpo/proto";
import type { StageContext } from "./driver-deps.js";
import { runTrainerJob } from "./peer-calls.js";
import { StageError } from "./run-errors.js";
import { type ModelRole, modelJobSpec } from "./run-plan.js";
import { withStageSpan } from "./run-tracing.js";

/** How the run names, finds and stores each of its first two models. */
interface ModelStageSpec {
  stage: RunStage;
  /** The model in progress messages ("base model"). */
  name: string;
  /** The config field that names an existing checkpoint instead of training one. */
  field: string;
  given: (cfg: RunConfig) => string;
  stored: (run: Run) => CheckpointRef | undefined;
  store: (run: Run, ref: CheckpointRef) => void;
}

const MODEL_STAGES: Record<ModelRole, ModelStageSpec> = {
  base: {
    stage: RunStage.BASE,
    name: "base model",
    field: "config.base_checkpoint_id",
    given: (cfg) => cfg.baseCheckpointId,
    stored: (run) => run.baseCheckpoint,
    store: (run, ref) => {
      run.baseCheckpoint = ref;
    },
  },
  improver: {
    stage: RunStage.IMPROVER,
    name: "improvement model",
    field: "config.improver_checkpoint_id",
    given: (cfg) => cfg.improverCheckpointId,
    stored: (run) => run.improverCheckpoint,
    store: (run, ref) => {
      run.improverCheckpoint = ref;
    },
  },
};

/**
 * The base or improver stage: the checkpoint the config names (it must be in the artifact store), or one
 * trained by a trainer job; recorded in the run once.
 */
export async function modelStage(ctx: StageContext, run: Run, role: ModelRole): Promise<void> {
  const s = MODEL_STAGES[role];
  const given = s.given(run.config!);
  await ctx.writer.enterStage(s.stage, 0, `${given ? "loading" : "training"} the ${s.name}`);
  const ref = await withStageSpan(ctx.runId, `idpo.run.${role}`, { "idpo.stage": role }, async () => {
    if (given) return await existingCheckpoint(ctx, given, s.field);
    const job = await runTrainerJob(ctx, modelJobSpec(run, role), s.name, (j, final) =>
      ctx.writer.jobProgress(j, s.stage, 0, s.name, final),
    );
    return job.finalCheckpoint!;
  });
  await ctx.writer.commit((r) => {
    if (s.stored(r)) return false;
    s.store(r, ref);
    return true;
  });
}

async function existingCheckpoint(ctx: StageContext, id: string, field: string): Promise<CheckpointRef> {
  const ref = await ctx.deps.checkpoints.ref(id);
  if (!ref) throw new StageError(`${field}: checkpoint ${id} is not in the artifact store`);
  return ref;
}
