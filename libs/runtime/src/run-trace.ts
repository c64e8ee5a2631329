import { createHash } from "node:crypto";
import { type Context, context, type SpanContext, TraceFlags, trace } from "@opentelemetry/api";

/**
 * The span context of a run's root span: trace and span ids derived from the run id, so that every process
 * (the controller that drives the run, one that resumes it after a restart, a trainer resuming a job)
 * parents its spans on the run's root without asking anyone. The controller records the root span itself
 * with these ids and exports it when the run ends.
 */
export function runSpanContext(runId: string): SpanContext {
  const h = createHash("sha256").update(`idpo-run-trace:${runId}`).digest();
  // All-zero ids are invalid in W3C trace context; a SHA-256 prefix being zero is negligible, but guard it.
  if (h.subarray(0, 16).every((b) => b === 0)) h[15] = 1;
  if (h.subarray(16, 24).every((b) => b === 0)) h[23] = 1;
  return {
    traceId: h.subarray(0, 16).toString("hex"),
    spanId: h.subarray(16, 24).toString("hex"),
    traceFlags: TraceFlags.SAMPLED,
    isRemote: true,
  };
}

/** The trace id of a run (see `runSpanContext`), for finding its spans. */
export function runTraceId(runId: string): string {
  return runSpanContext(runId).traceId;
}

/**
 * The context that work of run `runId` continues in: `ctx` itself when it has a span (a request being
 * served, a message being processed), else `ctx` under the run's root span (work resumed after a restart).
 */
export function runContext(runId: string, ctx: Context = context.active()): Context {
  if (trace.getSpan(ctx) !== undefined || runId === "") return ctx;
  return trace.setSpanContext(ctx, runSpanContext(runId));
}
