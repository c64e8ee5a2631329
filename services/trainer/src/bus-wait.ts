import { RevisionConflictError } from "@idpo/bus";
import { type Logger, retryTransient } from "@idpo/runtime";

/** How long the trainer waits for an unreachable bus before a write that must land fails the job: 10 min. */
export const DEFAULT_BUS_WAIT_MS = 600_000;

/**
 * Calls `fn` until it succeeds, retrying every failure but a compare-and-set conflict (which says someone
 * else changed the job, not that the bus is away) with backoff, for up to `budgetMs`. For the writes a job
 * cannot go on without (its final checkpoint, its terminal state): a NATS restart or leader election
 * makes them time out for a few seconds, which is no reason to fail a job that trained for an hour.
 */
export function untilBusAnswers<T>(
  what: string,
  fn: () => Promise<T>,
  opts: { logger: Logger; budgetMs: number; signal?: AbortSignal },
): Promise<T> {
  return retryTransient(fn, {
    budgetMs: opts.budgetMs,
    baseDelayMs: 200,
    signal: opts.signal,
    retryable: (err) => !(err instanceof RevisionConflictError),
    onRetry: (err, attempt, delay) =>
      opts.logger.warn("bus write failed; retrying", {
        what,
        attempt: attempt + 1,
        retryInMs: delay,
        error: (err as Error).message,
      }),
  });
}
