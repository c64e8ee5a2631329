import { create, toBinary } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import type { EventLog } from "@idpo/bus";
import { type CheckpointRef, type RunEvent, RunEventSchema } from "@idpo/proto";

/**
 * The subject token of a job's events: its run id, or for an ad-hoc job (no run) "job-" + the job id
 * with every character outside [A-Za-z0-9_-] replaced by "_".
 */
export function eventToken(runId: string, jobId: string): string {
  return runId !== "" ? runId : `job-${jobId.replace(/[^A-Za-z0-9_-]/g, "_")}`;
}

async function publish(events: EventLog, token: string, kind: string, ev: RunEvent): Promise<void> {
  await events.publish(`idpo.events.${token}.${kind}`, toBinary(RunEventSchema, ev), { msgId: ev.eventId });
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
 * Publishes checkpoint_published to `idpo.events.<token>.checkpoint_published` with the deterministic
 * event id (and Nats-Msg-Id) `<run or job>/ckpt/<checkpoint id>`, so a republish after a restart is
 * de-duplicated.
 */
export async function publishCheckpoint(events: EventLog, e: CheckpointEventInput): Promise<void> {
  const ev = create(RunEventSchema, {
    eventId: `${e.runId || e.jobId}/ckpt/${e.checkpoint.id}`,
    runId: e.runId,
    time: timestampNow(),
    payload: {
      case: "checkpointPublished",
      value: { checkpoint: e.checkpoint, jobId: e.jobId, iteration: e.iteration, isFinal: e.isFinal },
    },
  });
  await publish(events, eventToken(e.runId, e.jobId), "checkpoint_published", ev);
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
export async function publishProgress(events: EventLog, e: ProgressEventInput): Promise<void> {
  if (e.runId === "") return;
  const ev = create(RunEventSchema, {
    eventId: `${e.runId}/job/${e.jobId}/progress/${e.step}`,
    runId: e.runId,
    time: timestampNow(),
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
  await publish(events, e.runId, "job_progress", ev);
}
