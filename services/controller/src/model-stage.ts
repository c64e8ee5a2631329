import type { CheckpointRef, Run } from "@idpo/proto";
import { RunStage } from "@idpo/proto";
import type { StageContext } from "./driver-deps.js";
import { runTrainerJob } from "./peer-calls.js";
import { StageError } from "./run-errors.js";
import { type ModelRole, modelJobSpec } from "./run-plan.js";
import { withStageSpan } from "./run-tracing.js";

/** The stage of each model and its name in progress messages. */
const MODEL_STAGES: Record<ModelRole, { stage: RunStage; name: string }> = {
  base: { stage: RunStage.BASE, name: "base model" },
  improver: { stage: RunStage.IMPROVER, name: "improvement model" },
};

/**
 * The base or improver stage: the checkpoint the config names (it must be in the artifact store), or one
 * trained by a trainer job; recorded in the run once.
 */
export async function modelStage(ctx: StageContext, run: Run, role: ModelRole): Promise<void> {
  const s = MODEL_STAGES[role];
  // RunConfig.<role>CheckpointId names an existing checkpoint; Run.<role>Checkpoint records the model.
  const given = run.config![`${role}CheckpointId`];
  const recorded = `${role}Checkpoint` as const;
  await ctx.writer.enterStage(s.stage, 0, `${given ? "loading" : "training"} the ${s.name}`);
  const ref = await withStageSpan(ctx.runId, `idpo.run.${role}`, { "idpo.stage": role }, async () => {
    if (given) return await existingCheckpoint(ctx, given, `config.${role}_checkpoint_id`);
    const job = await runTrainerJob(ctx, modelJobSpec(run, role), s.name, (j, final) =>
      ctx.writer.jobProgress(j, s.stage, 0, s.name, final),
    );
    return job.finalCheckpoint!;
  });
  await ctx.writer.commit((r) => {
    if (r[recorded]) return false;
    r[recorded] = ref;
    return true;
  });
}

async function existingCheckpoint(ctx: StageContext, id: string, field: string): Promise<CheckpointRef> {
  const ref = await ctx.deps.checkpoints.ref(id);
  if (!ref) throw new StageError(`${field}: checkpoint ${id} is not in the artifact store`);
  return ref;
}
