import {
  Code,
  ConnectError,
  type Interceptor,
  type StreamResponse,
  type UnaryResponse,
} from "@connectrpc/connect";
import {
  type Attributes,
  type Context,
  context,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type TextMapSetter,
  trace,
} from "@opentelemetry/api";
import { runSpanContext } from "./run-trace.js";
import { withService } from "./trace-provider.js";
import { tracer } from "./tracing.js";

const headerGetter: TextMapGetter<Headers> = {
  keys: (h) => [...h.keys()],
  get: (h, key) => h.get(key) ?? undefined,
};
const headerSetter: TextMapSetter<Headers> = {
  set: (h, key, value) => h.set(key, value),
};

/** Health checks (probes, balancer refreshes) every few seconds would bury the traces worth reading. */
const UNTRACED_SERVICE = "grpc.health.v1.Health";

/** Codes a server reports as its own failure (OpenTelemetry RPC conventions); the rest are the caller's. */
const SERVER_FAULTS = new Set([
  Code.Unknown,
  Code.DeadlineExceeded,
  Code.Unimplemented,
  Code.Internal,
  Code.Unavailable,
  Code.DataLoss,
]);

function rpcAttributes(req: { service: { typeName: string }; method: { name: string } }): Attributes {
  return {
    "rpc.system": "grpc",
    "rpc.service": req.service.typeName,
    "rpc.method": req.method.name,
  };
}

/** Ends `span` with the call's gRPC status; `err` undefined = OK. Idempotent through `ended`. */
function ender(span: Span, kind: SpanKind): (err?: unknown) => void {
  let ended = false;
  return (err) => {
    if (ended) return;
    ended = true;
    if (err === undefined) {
      span.setAttribute("rpc.grpc.status_code", 0);
    } else {
      const e = ConnectError.from(err);
      span.setAttribute("rpc.grpc.status_code", e.code);
      if (kind === SpanKind.CLIENT || SERVER_FAULTS.has(e.code)) {
        span.recordException(e);
        span.setStatus({ code: SpanStatusCode.ERROR, message: `${Code[e.code]}: ${e.rawMessage}` });
      }
    }
    span.end();
  };
}

/**
 * The messages of a streaming call, pulled inside `ctx` (so that a streaming handler's own work is part of
 * its span), with `finish` called once the stream ends, fails or is abandoned by its reader.
 */
async function* streamInContext<T>(
  messages: AsyncIterable<T>,
  ctx: Context,
  finish: (err?: unknown) => void,
): AsyncGenerator<T> {
  const it = messages[Symbol.asyncIterator]();
  let done = false;
  try {
    for (;;) {
      const r = await context.with(ctx, () => it.next());
      if (r.done) break;
      yield r.value;
    }
    done = true;
    finish();
  } catch (err) {
    done = true;
    finish(err);
    throw err;
  } finally {
    if (!done) {
      // The reader stopped early (it had what it needed, or it was cancelled): the call is over for it, even
      // while the stream underneath is still being released.
      finish();
      await context.with(ctx, async () => it.return?.()).catch(() => undefined);
    }
  }
}

/**
 * The messages of a call's response stream with one message read ahead, `finish` called when the stream
 * ends or fails. A reader that stops early may not say so (connect's clients drop `return`), so the end of
 * the call is seen by reading ahead, not by waiting for the reader.
 */
function readAhead<T>(
  messages: AsyncIterable<T>,
  ctx: Context,
  finish: (err?: unknown) => void,
): AsyncIterable<T> {
  const it = messages[Symbol.asyncIterator]();
  const pull = () => {
    const p = context.with(ctx, () => it.next());
    p.then(
      (r) => {
        if (r.done) finish();
      },
      (err) => finish(err),
    );
    return p;
  };
  let ahead: Promise<IteratorResult<T>> | undefined;
  return {
    [Symbol.asyncIterator]: () => ({
      next: async () => {
        const r = await (ahead ?? pull());
        ahead = r.done ? undefined : pull();
        return r;
      },
      return: async () => {
        finish();
        await it.return?.();
        return { done: true, value: undefined };
      },
    }),
  };
}

/**
 * Runs a call inside `ctx` and ends `span` with its status: at once for a unary call, when the response
 * stream ends (through `wrap`) for a streaming one.
 */
async function traced<R extends UnaryResponse | StreamResponse>(
  span: Span,
  kind: SpanKind,
  ctx: Context,
  call: () => Promise<R>,
  wrap: <T>(messages: AsyncIterable<T>, ctx: Context, finish: (err?: unknown) => void) => AsyncIterable<T>,
): Promise<R> {
  const finish = ender(span, kind);
  try {
    const res = await context.with(ctx, call);
    if (!res.stream) {
      finish();
      return res;
    }
    return { ...res, message: wrap(res.message, ctx, finish) };
  } catch (err) {
    finish(err);
    throw err;
  }
}

/** The run a unary request names in a top-level `runId` field, if any. */
function requestRunId(message: unknown): string | undefined {
  const v = (message as { runId?: unknown }).runId;
  return typeof v === "string" && v !== "" ? v : undefined;
}

/**
 * Server interceptor: a SERVER span per call (`rpc.*` attributes, `rpc.grpc.status_code`), continuing the
 * caller's trace from the request headers, recorded as service `service`'s (see `withService`). A unary
 * request that names a run (`run_id`) from outside the run's trace gets a link to the run's root span, so a
 * viewer leads from CreateRun or GetRun to the run itself.
 */
export function serverTracingInterceptor(service?: string): Interceptor {
  return (next) => async (req) => {
    const base = service ? withService(ROOT_CONTEXT, service) : ROOT_CONTEXT;
    if (req.service.typeName === UNTRACED_SERVICE) return await context.with(base, () => next(req));
    const parent = propagation.extract(base, req.header, headerGetter);
    const span = tracer().startSpan(
      `${req.service.typeName}/${req.method.name}`,
      { kind: SpanKind.SERVER, attributes: rpcAttributes(req) },
      parent,
    );
    const runId = req.stream ? undefined : requestRunId(req.message);
    if (runId) {
      const run = runSpanContext(runId);
      if (run.traceId !== span.spanContext().traceId) span.addLink({ context: run });
    }
    return await traced(span, SpanKind.SERVER, trace.setSpan(parent, span), () => next(req), streamInContext);
  };
}

/**
 * Client interceptor: a CLIENT span per call attempt (`rpc.*`, `server.address`, `server.port`,
 * `rpc.grpc.status_code`), whose context travels in the request headers (W3C trace context). A retried call
 * shows as one span per attempt, the failed ones with their status.
 */
export function clientTracingInterceptor(): Interceptor {
  return (next) => async (req) => {
    if (req.service.typeName === UNTRACED_SERVICE) return await next(req);
    const attributes = rpcAttributes(req);
    try {
      const url = new URL(req.url);
      attributes["server.address"] = url.hostname;
      attributes["server.port"] = Number(url.port || (url.protocol === "https:" ? 443 : 80));
    } catch {
      // An in-memory transport has no network address.
    }
    const span = tracer().startSpan(`${req.service.typeName}/${req.method.name}`, {
      kind: SpanKind.CLIENT,
      attributes,
    });
    const ctx = trace.setSpan(context.active(), span);
    propagation.inject(ctx, req.header, headerSetter);
    return await traced(span, SpanKind.CLIENT, ctx, () => next(req), readAhead);
  };
}
