import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

/**
 * Names of the errors a NATS client raises while its server is away (restarting, electing a leader,
 * unreachable). Matched by name: the runtime does not depend on the bus, and these names are the client's
 * stable API (nats.js v3 errors).
 */
const PEER_AWAY_ERRORS = new Set([
  "TimeoutError",
  "ClosedConnectionError",
  "DrainingConnectionError",
  "ConnectionError",
  "RequestError",
  "NoResponders",
]);

/** True for an error that says a backing server (NATS) is away, not that the request is wrong. */
export function isPeerAway(err: unknown): boolean {
  return err instanceof Error && !(err instanceof ConnectError) && PEER_AWAY_ERRORS.has(err.name);
}

/**
 * Server interceptor: a handler failing because the bus is away answers UNAVAILABLE (which callers retry)
 * instead of connect's INTERNAL "internal error" (which they take for a bug and give up on): a NATS
 * restart during a call must cost a retry, not a run.
 */
export function peerAwayInterceptor(): Interceptor {
  return (next) => async (req) => {
    try {
      return await next(req);
    } catch (err) {
      if (!isPeerAway(err)) throw err;
      throw new ConnectError(
        `a backing service is unavailable: ${(err as Error).message}`,
        Code.Unavailable,
        undefined,
        undefined,
        err,
      );
    }
  };
}
