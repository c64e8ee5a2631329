/** A stage failed for a reason a retry cannot cure: the run fails with this message. */
export class StageError extends Error {
  override readonly name = "StageError";
}

/** The run ended (cancelled, failed elsewhere) or the controller is stopping: stop driving quietly. */
export class RunEnded extends Error {
  override readonly name = "RunEnded";
}

/** The step was overtaken: someone else (another controller) advanced the run past it. */
export class Superseded extends Error {
  override readonly name = "Superseded";
}

/** The message of anything thrown. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
