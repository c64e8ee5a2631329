import { type Bus, publishRunEvent } from "@idpo/bus";
import type { CheckpointRef } from "@idpo/proto";

/**
 * The run id a job's events carry (and their subject token): its run id, or for an ad-hoc job (no run)
 * "job-" + the job id with every character outside [A-Za-z0-9_-] replaced by "_".
 */
export function eventToken(runId: string, jobId: string): string {
  return runId !== "" ? runId : `job-${jobId.replace(/[^A-Za-z0-9_-]/g, "_")}`;
}

/** What a checkpoint_published event says. */
export interface CheckpointEventInput {
  runId: string;
  jobId: string;
  iteration: number;
  checkpoint: CheckpointRef;
  isFinal: boolean;
}

/**
 * Publishes checkpoint_published to `idpo.events.<run>.checkpoint_published` with the deterministic event
 * id (and Nats-Msg-Id) `<run or job>/ckpt/<checkpoint id>`, so a republish after a restart is de-duplicated.
 */
export async function publishCheckpoint(bus: Pick<Bus, "events">, e: CheckpointEventInput): Promise<void> {
  await publishRunEvent(bus.events, {
    eventId: `${e.runId || e.jobId}/ckpt/${e.checkpoint.id}`,
    runId: eventToken(e.runId, e.jobId),
    payload: {
      case: "checkpointPublished",
      value: { checkpoint: e.checkpoint, jobId: e.jobId, iteration: e.iteration, isFinal: e.isFinal },
    },
  });
}

/** What a job_progress event says. */
export interface ProgressEventInput {
  runId: string;
  jobId: string;
  step: number;
  totalSteps: number;
  metrics: Record<string, number>;
  etaSeconds: number;
}

/** Publishes job_progress (event id `<run>/job/<job id>/progress/<step>`); only for jobs of a run. */
export async function publishProgress(bus: Pick<Bus, "events">, e: ProgressEventInput): Promise<void> {
  if (e.runId === "") return;
  await publishRunEvent(bus.events, {
    eventId: `${e.runId}/job/${e.jobId}/progress/${e.step}`,
    runId: e.runId,
    payload: {
      case: "jobProgress",
      value: {
        jobId: e.jobId,
        step: e.step,
        totalSteps: e.totalSteps,
        metrics: e.metrics,
        etaSeconds: e.etaSeconds,
      },
    },
  });
}
