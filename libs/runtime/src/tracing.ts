import type { Interceptor } from "@connectrpc/connect";
import {
  context,
  propagation,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type TextMapSetter,
  trace,
} from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor, type SpanExporter, type SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";

const headerGetter: TextMapGetter<Headers> = {
  keys: (h) => [...h.keys()],
  get: (h, key) => h.get(key) ?? undefined,
};
const headerSetter: TextMapSetter<Headers> = {
  set: (h, key, value) => h.set(key, value),
};

/** Tracer used by all idpo code. Without an initialised provider every span is a no-op. */
export function tracer() {
  return trace.getTracer("idpo");
}

let provider: NodeTracerProvider | undefined;

/**
 * Turns tracing on for this process: spans are exported to `endpoint` (OTLP/HTTP, i.e.
 * OTEL_EXPORTER_OTLP_ENDPOINT) or to `exporter`, with W3C trace-context propagation.
 * Does nothing when neither is given. Idempotent: the first call wins.
 */
export function initTracing(opts: {
  serviceName: string;
  endpoint?: string;
  exporter?: SpanExporter;
}): boolean {
  if (provider) return true;
  const processors: SpanProcessor[] = [];
  if (opts.exporter) processors.push(new BatchSpanProcessor(opts.exporter, { scheduledDelayMillis: 200 }));
  if (opts.endpoint) {
    const url = `${opts.endpoint.replace(/\/$/, "")}/v1/traces`;
    processors.push(new BatchSpanProcessor(new OTLPTraceExporter({ url })));
  }
  if (processors.length === 0) return false;
  provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ "service.name": opts.serviceName }),
    spanProcessors: processors,
  });
  provider.register({ propagator: new W3CTraceContextPropagator() });
  return true;
}

/** Flushes and stops the tracer provider, if any. */
export async function shutdownTracing(): Promise<void> {
  const p = provider;
  provider = undefined;
  await p?.shutdown();
}

/** Server interceptor: continues the caller's trace (from request headers) in a server span per call. */
export function serverTracingInterceptor(): Interceptor {
  return (next) => async (req) => {
    const parent = propagation.extract(context.active(), req.header, headerGetter);
    const name = `${req.service.typeName}/${req.method.name}`;
    const span = tracer().startSpan(
      name,
      {
        kind: SpanKind.SERVER,
        attributes: {
          "rpc.system": "grpc",
          "rpc.service": req.service.typeName,
          "rpc.method": req.method.name,
        },
      },
      parent,
    );
    return await context.with(trace.setSpan(parent, span), async () => {
      try {
        const res = await next(req);
        span.end();
        return res;
      } catch (err) {
        span.recordException(err as Error);
        span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
        span.end();
        throw err;
      }
    });
  };
}

/** Client interceptor: injects the active trace context into the request headers. */
export function clientTracingInterceptor(): Interceptor {
  return (next) => async (req) => {
    propagation.inject(context.active(), req.header, headerSetter);
    return await next(req);
  };
}
