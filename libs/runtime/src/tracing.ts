import { hostname } from "node:os";
import {
  type Attributes,
  type Context,
  context,
  propagation,
  type Span,
  type SpanOptions,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter as OtlpJsonExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { OTLPTraceExporter as OtlpProtobufExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor, type SpanExporter } from "@opentelemetry/sdk-trace-base";
import type { OtlpProtocol } from "./config.js";
import { createLogger, type Logger } from "./logger.js";
import { GuardedExporter } from "./trace-export.js";
import { ServiceTracerProvider } from "./trace-provider.js";

/** Tracer used by all idpo code. Without an initialised provider every span is a no-op. */
export function tracer() {
  return trace.getTracer("idpo");
}

/**
 * Runs `fn` inside an INTERNAL span `name` started under `parent` (default: the active context), ending it
 * when `fn` settles, with ERROR status and the exception when it throws.
 */
export async function withSpan<T>(
  name: string,
  attributes: Attributes,
  fn: (span: Span) => Promise<T>,
  parent: Context = context.active(),
): Promise<T> {
  const span = tracer().startSpan(name, { attributes }, parent);
  try {
    return await context.with(trace.setSpan(parent, span), () => fn(span));
  } catch (err) {
    span.recordException(err instanceof Error ? err : new Error(String(err)));
    span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
    throw err;
  } finally {
    span.end();
  }
}

/** Options of {@link initTracing}. */
export interface TracingOptions {
  /** `service.name` of spans started outside any service (a command's own calls); OTEL_SERVICE_NAME wins. */
  serviceName: string;
  /** OTLP/HTTP collector (OTEL_EXPORTER_OTLP_ENDPOINT); spans are posted to `<endpoint>/v1/traces`. */
  endpoint?: string;
  /** Encoding for `endpoint` (OTEL_EXPORTER_OTLP_PROTOCOL); default http/protobuf. */
  protocol?: OtlpProtocol;
  /** Another exporter, e.g. an in-memory one in tests; guarded like the collector's. */
  exporter?: SpanExporter;
  /** Where export failures are logged, once per outage; default JSON lines on stderr. */
  logger?: Logger;
  /** Environment with OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; default process.env. */
  env?: Record<string, string | undefined>;
}

/** Spans waiting for export at most; a dead collector costs no more (newer spans are dropped). */
const QUEUE_SPANS = 2048;
/** Spans per export request. */
const BATCH_SPANS = 512;
/** Longest wait for the last spans at shutdown, ms. */
const SHUTDOWN_MS = 15_000;
/** How long one export request may take, ms, unless OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT says otherwise:
 * longer than OpenTelemetry's 10 s, because a service busy training can hold its event loop for seconds
 * and the request's timer fires before its answer is read. */
const REQUEST_MS = 30_000;

let active: { processors: BatchSpanProcessor[]; ids: ServiceTracerProvider["ids"] } | undefined;

/** OTEL_RESOURCE_ATTRIBUTES: `key=value` pairs separated by commas, values percent-encoded. */
function envResourceAttributes(v: string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (v ?? "").split(",")) {
    const i = part.indexOf("=");
    if (i <= 0) continue;
    try {
      out[part.slice(0, i).trim()] = decodeURIComponent(part.slice(i + 1).trim());
    } catch {
      // A malformed pair is skipped, as the OpenTelemetry SDKs do.
    }
  }
  return out;
}

/**
 * Turns tracing on for this process: spans are exported to `endpoint` (OTLP/HTTP) and/or `exporter`, with
 * W3C trace-context propagation. Every service of the process gets its own resource: `service.name`
 * `idpo-<service>`, `service.namespace` `idpo`, `service.instance.id` host:pid (OTEL_RESOURCE_ATTRIBUTES
 * may override the instance id and add attributes). Export failures are logged once per outage and never
 * reach the caller. Returns true when this call turned tracing on; false when there is nothing to export to
 * or tracing was already on (the first call wins; only its caller should call `shutdownTracing`).
 */
export function initTracing(opts: TracingOptions): boolean {
  if (active) return false;
  const env = opts.env ?? process.env;
  const logger = opts.logger ?? createLogger("info", { component: "tracing" });
  const processors: BatchSpanProcessor[] = [];
  const timeoutMillis =
    env.OTEL_EXPORTER_OTLP_TRACES_TIMEOUT || env.OTEL_EXPORTER_OTLP_TIMEOUT ? undefined : REQUEST_MS;
  const add = (exporter: SpanExporter, target: string, delayMs: number) =>
    processors.push(
      new BatchSpanProcessor(new GuardedExporter(exporter, target, logger), {
        maxQueueSize: QUEUE_SPANS,
        maxExportBatchSize: BATCH_SPANS,
        scheduledDelayMillis: delayMs,
        // Two tries (see GuardedExporter) of a request that may take REQUEST_MS each.
        exportTimeoutMillis: 2 * (timeoutMillis ?? REQUEST_MS) + 5_000,
      }),
    );
  if (opts.exporter) add(opts.exporter, "test exporter", 200);
  if (opts.endpoint) {
    const url = `${opts.endpoint.replace(/\/$/, "")}/v1/traces`;
    const exporter =
      opts.protocol === "http/json"
        ? new OtlpJsonExporter({ url, timeoutMillis })
        : new OtlpProtobufExporter({ url, timeoutMillis });
    add(exporter, url, 1000);
  }
  if (processors.length === 0) return false;
  const common = {
    "service.namespace": "idpo",
    "service.instance.id": `${hostname()}:${process.pid}`,
    "host.name": hostname(),
    "process.pid": process.pid,
    ...envResourceAttributes(env.OTEL_RESOURCE_ATTRIBUTES),
  };
  const processName = env.OTEL_SERVICE_NAME?.trim() || opts.serviceName;
  const provider = new ServiceTracerProvider(
    resourceFromAttributes({ ...common, "service.name": processName }),
    (service) => resourceFromAttributes({ ...common, "service.name": `idpo-${service}` }),
    processors,
  );
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
  active = { processors, ids: provider.ids };
  return true;
}

/**
 * Starts a span with the given ids and no parent (the run's root span, whose ids every process derives
 * from the run id). Without idpo's tracer provider the ids are random.
 */
export function startSpanWithIds(
  name: string,
  ids: { traceId: string; spanId: string },
  options: SpanOptions,
  ctx: Context = context.active(),
): Span {
  const start = () => tracer().startSpan(name, { ...options, root: true }, ctx);
  return active ? active.ids.withIds(ids, start) : start();
}

/** Exports the spans ended so far (tests). Never rejects. */
export async function flushTracing(): Promise<void> {
  await Promise.allSettled((active?.processors ?? []).map((p) => p.forceFlush()));
}

/**
 * Exports what is left (waiting at most 15 s for the collector) and turns tracing off. Never rejects: a
 * collector that is gone only costs the spans it did not take.
 */
export async function shutdownTracing(): Promise<void> {
  const a = active;
  if (!a) return;
  active = undefined;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.allSettled(a.processors.map((p) => p.shutdown())),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, SHUTDOWN_MS);
      timer.unref();
    }),
  ]);
  clearTimeout(timer);
  trace.disable();
  propagation.disable();
  context.disable();
}
