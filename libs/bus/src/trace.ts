import {
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
import type { Headers } from "./types.js";

const tracer = trace.getTracer("@idpo/bus");

/** Header lookups are case-insensitive: NATS servers and proxies may change the case of header names. */
export function getHeader(headers: Headers, name: string): string | undefined {
  const direct = headers[name];
  if (direct !== undefined) return direct;
  const lower = name.toLowerCase();
  for (const k of Object.keys(headers)) if (k.toLowerCase() === lower) return headers[k];
  return undefined;
}

const getter: TextMapGetter<Headers> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => getHeader(carrier, key),
};

const setter: TextMapSetter<Headers> = {
  set: (carrier, key, value) => {
    carrier[key] = value;
  },
};

/** Run `fn` inside a PRODUCER span for `subject` (OpenTelemetry messaging conventions: operation type
 * `send`), with the span's context injected into `headers` (W3C `traceparent` when a propagator is
 * registered; nothing when the OpenTelemetry API is a no-op). */
export async function withProducerSpan<T>(
  operation: "publish" | "enqueue",
  subject: string,
  headers: Headers,
  fn: (headers: Headers) => Promise<T>,
  msgId?: string,
): Promise<T> {
  const span = tracer.startSpan(`${operation} ${subject}`, {
    kind: SpanKind.PRODUCER,
    attributes: {
      "messaging.system": "nats",
      "messaging.operation.type": "send",
      "messaging.operation.name": operation,
      "messaging.destination.name": subject,
      ...(msgId ? { "messaging.message.id": msgId } : {}),
    },
  });
  const ctx = trace.setSpan(context.active(), span);
  const out: Headers = { ...headers };
  propagation.inject(ctx, out, setter);
  try {
    const result = await context.with(ctx, () => fn(out));
    span.end();
    return result;
  } catch (err) {
    endWithError(span, err);
    throw err;
  }
}

/** The publisher's context as carried in the headers, over `base` (ROOT_CONTEXT: nothing else). */
export function extractContext(headers: Headers, base: Context = ROOT_CONTEXT): Context {
  return propagation.extract(base, headers, getter);
}

/** What a subscriber's context contributes to its deliveries' spans: its values (e.g. which service of
 * the process subscribed), not its active span: a delivery continues the publisher's trace. */
export function subscriberContext(): Context {
  return trace.deleteSpan(context.active());
}

/** Start the CONSUMER span of one delivery (operation type `process`) under the publisher's context, with
 * the values of the subscriber's context `base`; returns it with its context. */
export function startConsumerSpan(
  subject: string,
  consumer: string,
  headers: Headers,
  deliveryCount: number,
  base: Context = ROOT_CONTEXT,
): { span: Span; ctx: Context } {
  const parent = extractContext(headers, base);
  const msgId = getHeader(headers, "Nats-Msg-Id");
  const span = tracer.startSpan(
    `process ${subject}`,
    {
      kind: SpanKind.CONSUMER,
      attributes: {
        "messaging.system": "nats",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": subject,
        "messaging.consumer.group.name": consumer,
        "messaging.message.delivery_count": deliveryCount,
        ...(msgId ? { "messaging.message.id": msgId } : {}),
      },
    },
    parent,
  );
  return { span, ctx: trace.setSpan(parent, span) };
}

/** End a span as failed with the error's message. */
export function endWithError(span: Span, err: unknown): void {
  span.recordException(err instanceof Error ? err : new Error(String(err)));
  span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
  span.end();
}
