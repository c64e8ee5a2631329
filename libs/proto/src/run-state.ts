import { RunState } from "./gen/idpo/controller/v1/controller_service_pb.js";

/** Whether a run in this state will change no more: SUCCEEDED, FAILED or CANCELLED. */
export function runStateEnded(state: RunState): boolean {
  return state === RunState.SUCCEEDED || state === RunState.FAILED || state === RunState.CANCELLED;
}
