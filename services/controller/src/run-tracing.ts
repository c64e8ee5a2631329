import { createHash } from "node:crypto";
import {
  type Context,
  context,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  trace,
} from "@opentelemetry/api";

/**
 * The trace of a run: a trace id and parent span id derived from the run id, so that every stage span of
 * the run (in any controller process, before and after restarts) belongs to one trace. The parent is a
 * remote span context that is never exported itself; the stage spans hang off it.
 */
export function runTraceContext(runId: string): Context {
  const h = createHash("sha256").update(`idpo-run-trace:${runId}`).digest();
  // An all-zero id is invalid in W3C trace context; a SHA-256 prefix being zero is negligible, but guard it.
  if (h.subarray(0, 16).every((b) => b === 0)) h[15] = 1;
  if (h.subarray(16, 24).every((b) => b === 0)) h[23] = 1;
  return trace.setSpanContext(ROOT_CONTEXT, {
    traceId: h.subarray(0, 16).toString("hex"),
    spanId: h.subarray(16, 24).toString("hex"),
    traceFlags: TraceFlags.SAMPLED,
    isRemote: true,
  });
}

/** The trace id of a run (what `runTraceContext` uses), for finding its spans. */
export function runTraceId(runId: string): string {
  return trace.getSpanContext(runTraceContext(runId))!.traceId;
}

/**
 * Runs `fn` inside a span `name` of the run's trace; peer calls and bus messages made inside it carry the
 * span's context (client interceptor, message headers), so the services' own spans join the run's trace.
 */
export async function withStageSpan<T>(
  runId: string,
  name: string,
  attributes: Record<string, string | number>,
  fn: (span: Span) => Promise<T>,
): Promise<T> {
  const tracer = trace.getTracer("idpo");
  const parent = runTraceContext(runId);
  const span = tracer.startSpan(
    name,
    { kind: SpanKind.INTERNAL, attributes: { "idpo.run_id": runId, ...attributes } },
    parent,
  );
  try {
    const out = await context.with(trace.setSpan(parent, span), () => fn(span));
    span.end();
    return out;
  } catch (err) {
    span.recordException(err instanceof Error ? err : new Error(String(err)));
    span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
    span.end();
    throw err;
  }
}
