import type { Client } from "@connectrpc/connect";
import { type ControllerService, type Run, runStateEnded } from "@idpo/proto";

/** What {@link followRun} calls on the Controller. */
export type RunFollowClient = Pick<Client<typeof ControllerService>, "watchRun" | "getRun">;

/** Options of {@link followRun}; the defaults open WatchRun once and throw what breaks it. */
export interface FollowRunOptions {
  /** The run as already known (e.g. CreateRun's answer): returned when no update arrives. It is watched
   * even when it has ended, so `onUpdate` still sees its state once. */
  initial?: Run;
  /** Sees every update of WatchRun in order, awaited (so keep it short). */
  onUpdate?: (run: Run) => Promise<void> | void;
  /** Stops following: WatchRun is cancelled and the last run seen is returned, not the cancellation. */
  signal?: AbortSignal;
  /** How many times WatchRun is opened at most: the stream breaks or ends early when the Controller or the
   * bus restarts. Default 1. */
  attempts?: number;
  /** Whether an error of WatchRun opens it again (after `retryDelayMs`) rather than being thrown; it also
   * sees the error first (e.g. to log it). Default: none is retried. */
  retryOn?: (err: unknown) => boolean;
  /** Pause after a broken WatchRun before the next step, ms. Default 0. */
  retryDelayMs?: number;
  /** Reads the run with GetRun after a WatchRun that broke or ended before the run did, so a run that ended
   * meanwhile is not watched again. Default false. */
  refresh?: boolean;
}

/**
 * Follows a Controller run through WatchRun until it ends (SUCCEEDED, FAILED or CANCELLED), opening the watch
 * again up to `attempts` times when it breaks or ends early. Returns the last run seen: the ended run, or the
 * last update when `signal` stopped it or the attempts ran out (`initial`, or undefined, when none came).
 * Whether a run that did not succeed is an error is the caller's to say.
 */
export async function followRun(
  client: RunFollowClient,
  runId: string,
  options: FollowRunOptions & { initial: Run },
): Promise<Run>;
export async function followRun(
  client: RunFollowClient,
  runId: string,
  options?: FollowRunOptions,
): Promise<Run | undefined>;
export async function followRun(
  client: RunFollowClient,
  runId: string,
  options: FollowRunOptions = {},
): Promise<Run | undefined> {
  const { signal, attempts = 1 } = options;
  let last = options.initial;
  for (let attempt = 0; attempt < attempts && !signal?.aborted; attempt++) {
    try {
      for await (const res of client.watchRun({ runId }, { signal })) {
        last = res.run!;
        await options.onUpdate?.(last);
        if (runStateEnded(last.state)) return last;
      }
    } catch (err) {
      if (signal?.aborted) return last;
      if (!options.retryOn?.(err)) throw err;
      await pause(options.retryDelayMs ?? 0);
    }
    if (options.refresh) {
      last = (await client.getRun({ runId })).run!;
      if (runStateEnded(last.state)) return last;
    }
  }
  return last;
}

function pause(ms: number): Promise<void> {
  return ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve();
}
