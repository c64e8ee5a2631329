import { Code, ConnectError } from "@connectrpc/connect";
import { trace } from "@opentelemetry/api";

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

const CONNECTION_TROUBLE =
  /ECONNREFUSED|ECONNRESET|EPIPE|NGHTTP2|socket hang up|stream (was )?(closed|reset)|GOAWAY/i;

/**
 * True for errors that a retry may cure: the peer is down, restarting, overloaded or shutting down.
 * Errors about the request itself (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION...) are not.
 */
export function isTransient(err: unknown): boolean {
  if (!(err instanceof ConnectError)) return false;
  switch (err.code) {
    case Code.Unavailable:
    case Code.DeadlineExceeded:
    case Code.ResourceExhausted:
    case Code.Aborted:
      return true;
    case Code.Internal:
    case Code.Unknown:
    case Code.Canceled:
      return CONNECTION_TROUBLE.test(err.message);
    default:
      return false;
  }
}

/** Exponential backoff: base·2^attempt, capped. */
export function backoffMs(attempt: number, baseMs: number, capMs: number): number {
  return Math.min(capMs, baseMs * 2 ** Math.min(attempt, 20));
}

/** Options of {@link retryTransient}. */
export interface RetryOptions {
  /** Give up once this long has passed since the first failure (ms). */
  budgetMs: number;
  /** First delay (ms); doubles per attempt up to `maxDelayMs`. */
  baseDelayMs?: number;
  /** Largest delay (ms). */
  maxDelayMs?: number;
  /** Aborts the waiting. */
  signal?: AbortSignal;
  /** Called before each wait, e.g. to log. */
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
  /** Which errors are worth another try; default {@link isTransient}. */
  retryable?: (err: unknown) => boolean;
}

/**
 * Calls `fn` until it succeeds, retrying the errors `opts.retryable` accepts (by default the transient gRPC
 * ones, see `isTransient`) with exponential backoff until `opts.budgetMs` has passed since the first failure.
 */
export async function retryTransient<T>(fn: () => Promise<T>, opts: RetryOptions): Promise<T> {
  let firstFailure = 0;
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (opts.signal?.aborted) throw opts.signal.reason;
      if (!(opts.retryable ?? isTransient)(err)) throw err;
      const now = Date.now();
      if (firstFailure === 0) firstFailure = now;
      if (now - firstFailure >= opts.budgetMs) throw err;
      const delay = backoffMs(attempt, opts.baseDelayMs ?? 250, opts.maxDelayMs ?? 5_000);
      opts.onRetry?.(err, attempt, delay);
      // The failed attempt is a CLIENT span of its own; the caller's span says why and when it tries again.
      trace.getActiveSpan()?.addEvent("retry", {
        "idpo.retry.attempt": attempt + 1,
        "idpo.retry.delay_ms": delay,
        "exception.message": err instanceof Error ? err.message : String(err),
      });
      await sleep(delay, opts.signal);
    }
  }
}
