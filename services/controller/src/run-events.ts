import { type Bus, publishRunEvent } from "@idpo/bus";
import { type Run, RunStage, RunState } from "@idpo/proto";
import { context } from "@opentelemetry/api";
import { runParent } from "./run-tracing.js";

/** The deterministic event id of a run's state change: a run passes each (state, stage, iteration) once. */
export function stateEventId(run: Run): string {
  return `${run.runId}/state/${RunState[run.state]}/${RunStage[run.stage]}/${run.iteration}`;
}

/**
 * Publishes `run_state_changed` for the run's current state. Publishing the same state again (a retry, or a
 * restarted controller) is de-duplicated by its event id.
 */
export async function publishRunState(bus: Pick<Bus, "events">, run: Run): Promise<void> {
  // In the run's trace, also when a request (CreateRun, CancelRun) or a shard's failure report changed it.
  await context.with(runParent(run.runId), () => publishState(bus, run));
}

async function publishState(bus: Pick<Bus, "events">, run: Run): Promise<void> {
  await publishRunEvent(bus.events, {
    eventId: stateEventId(run),
    runId: run.runId,
    payload: {
      case: "runStateChanged",
      value: {
        state: `RUN_STATE_${RunState[run.state]}`,
        stage: `RUN_STAGE_${RunStage[run.stage]}`,
        iteration: run.iteration,
        message: run.state === RunState.FAILED ? run.error : (run.progress?.message ?? ""),
      },
    },
  });
}
