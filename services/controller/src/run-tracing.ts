import { timestampDate } from "@bufbuild/protobuf/wkt";
import { type Run, RunMethod, RunState } from "@idpo/proto";
import { runSpanContext, runTraceId, startSpanWithIds, withSpan } from "@idpo/runtime";
import { type Context, context, type Span, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";

export { runTraceId };

/**
 * The state key whose creation decides which controller exports a run's root span: with several replicas
 * driving one run, each ends its copy of the root, and only the first to create this key sends it.
 */
export function runTraceKey(runId: string): string {
  return `run-traces.${runId}`;
}

/**
 * Starts the root span of a run's trace (`idpo.run`), with the ids every process derives from the run id
 * and the run's creation time as its start, so that a controller resuming the run after a restart records
 * the same root. It links to the span that started the driver (CreateRun, or nothing at a resume).
 */
export function startRunSpan(run: Run): Span {
  const cause = trace.getSpanContext(context.active());
  const cfg = run.config;
  return startSpanWithIds("idpo.run", runSpanContext(run.runId), {
    kind: SpanKind.INTERNAL,
    startTime: run.createTime ? timestampDate(run.createTime) : undefined,
    attributes: {
      "idpo.run_id": run.runId,
      "idpo.run.name": cfg?.name ?? "",
      "idpo.run.method": cfg ? RunMethod[cfg.method] : "",
      "idpo.run.iterations": cfg?.iterations ?? 0,
    },
    links: cause && trace.isSpanContextValid(cause) ? [{ context: cause }] : [],
  });
}

/** Ends the root span with the run's final state (ERROR when it failed). */
export function endRunSpan(span: Span, run: Run): void {
  span.setAttribute("idpo.run.state", RunState[run.state]);
  if (run.state === RunState.FAILED) span.setStatus({ code: SpanStatusCode.ERROR, message: run.error });
  span.end();
}

/** The active context with the run's root as parent, unless its active span already is in the run's trace:
 * what is done for a run from a request (CreateRun's first state event, CancelRun's) belongs to the run. */
export function runParent(runId: string): Context {
  const active = context.active();
  const root = runSpanContext(runId);
  return trace.getSpanContext(active)?.traceId === root.traceId ? active : trace.setSpanContext(active, root);
}

/**
 * Runs `fn` inside a span `name` of the run's trace; peer calls and bus messages made inside it carry the
 * span's context (client interceptor, message headers), so the services' own spans join the run's trace.
 */
export function withStageSpan<T>(
  runId: string,
  name: string,
  attributes: Record<string, string | number>,
  fn: (span: Span) => Promise<T>,
): Promise<T> {
  return withSpan(name, { "idpo.run_id": runId, ...attributes }, fn, runParent(runId));
}
