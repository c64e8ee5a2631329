import { JobKind, type Run, RunStage } from "@idpo/proto";
import type { StageContext } from "./driver-deps.js";
import { runTrainerJob } from "./peer-calls.js";
import { iterationJobSpec } from "./run-plan.js";
import { withStageSpan } from "./run-tracing.js";

/** Iteration k's training: its trainer job (see `iterationJobSpec`), whose checkpoint and metrics the iteration records. */
export async function trainStage(ctx: StageContext, run: Run, k: number): Promise<void> {
  const spec = iterationJobSpec(run, k);
  const label = `iteration ${k}`;
  await ctx.writer.enterStage(RunStage.TRAIN, k, `iteration ${k}: training (${JobKind[spec.kind]})`);
  const job = await withStageSpan(
    ctx.runId,
    "idpo.run.train",
    { "idpo.stage": "train", "idpo.iteration": k },
    () =>
      runTrainerJob(ctx, spec, label, (j, final) =>
        ctx.writer.jobProgress(j, RunStage.TRAIN, k, label, final),
      ),
  );
  await ctx.writer.commit((r) => {
    const it = r.iterations[k - 1];
    if (!it || it.checkpoint) return false;
    it.checkpoint = job.finalCheckpoint;
    it.trainMetrics = { ...job.metrics };
    it.jobId = job.jobId;
    return true;
  });
}
