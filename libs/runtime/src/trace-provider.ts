import {
  type Context,
  context,
  createContextKey,
  type Span,
  type SpanOptions,
  type Tracer,
  type TracerOptions,
  type TracerProvider,
} from "@opentelemetry/api";
import type { Resource } from "@opentelemetry/resources";
import {
  BasicTracerProvider,
  type IdGenerator,
  RandomIdGenerator,
  type SpanProcessor,
} from "@opentelemetry/sdk-trace-base";

const SERVICE_KEY = createContextKey("idpo.service");

/** `ctx` with `service` (a short name such as "generator") as the service whose work it carries. */
export function withService(ctx: Context, service: string): Context {
  return ctx.setValue(SERVICE_KEY, service);
}

/** The service whose work `ctx` carries (see `withService`), if any. */
export function serviceOf(ctx: Context): string | undefined {
  const v = ctx.getValue(SERVICE_KEY);
  return typeof v === "string" ? v : undefined;
}

/**
 * Random ids, except for the one span started through `withIds`: the run's root span has ids derived from
 * its run id, so that every process (and a restarted controller) can parent spans on it without asking.
 */
class IdSource implements IdGenerator {
  private readonly random = new RandomIdGenerator();
  private fixed?: { traceId: string; spanId: string };

  generateTraceId(): string {
    return this.fixed?.traceId ?? this.random.generateTraceId();
  }

  generateSpanId(): string {
    return this.fixed?.spanId ?? this.random.generateSpanId();
  }

  /** Runs `start` (a synchronous span start) with the given ids. */
  withIds<T>(ids: { traceId: string; spanId: string }, start: () => T): T {
    this.fixed = ids;
    try {
      return start();
    } finally {
      this.fixed = undefined;
    }
  }
}

/**
 * A tracer provider that gives every service of the process its own resource: a span is recorded by the
 * provider of the service named in its parent context (see `withService`), or by the process's own one.
 * All of them feed the same span processors, so there is one export queue per process.
 */
export class ServiceTracerProvider implements TracerProvider {
  private readonly providers = new Map<string, BasicTracerProvider>();
  readonly ids = new IdSource();

  constructor(
    /** The resource of spans started outside any service (a command's own calls). */
    private readonly processResource: Resource,
    /** The resource of service `name`. */
    private readonly serviceResource: (name: string) => Resource,
    private readonly processors: SpanProcessor[],
  ) {}

  getTracer(name: string, version?: string, options?: TracerOptions): Tracer {
    return new RoutingTracer(this, name, version, options);
  }

  /** The SDK tracer of the service `ctx` belongs to. */
  tracerFor(ctx: Context, name: string, version?: string, options?: TracerOptions): Tracer {
    const service = serviceOf(ctx) ?? "";
    let p = this.providers.get(service);
    if (!p) {
      p = new BasicTracerProvider({
        resource: service === "" ? this.processResource : this.serviceResource(service),
        spanProcessors: this.processors,
        idGenerator: this.ids,
      });
      this.providers.set(service, p);
    }
    return p.getTracer(name, version, options);
  }
}

class RoutingTracer implements Tracer {
  constructor(
    private readonly provider: ServiceTracerProvider,
    private readonly name: string,
    private readonly version?: string,
    private readonly options?: TracerOptions,
  ) {}

  startSpan(name: string, options?: SpanOptions, ctx: Context = context.active()): Span {
    return this.provider.tracerFor(ctx, this.name, this.version, this.options).startSpan(name, options, ctx);
  }

  startActiveSpan<F extends (span: Span) => unknown>(name: string, fn: F): ReturnType<F>;
  startActiveSpan<F extends (span: Span) => unknown>(name: string, opts: SpanOptions, fn: F): ReturnType<F>;
  startActiveSpan<F extends (span: Span) => unknown>(
    name: string,
    opts: SpanOptions,
    ctx: Context,
    fn: F,
  ): ReturnType<F>;
  startActiveSpan<F extends (span: Span) => unknown>(
    name: string,
    a: SpanOptions | F,
    b?: Context | F,
    c?: F,
  ): ReturnType<F> {
    const opts = typeof a === "function" ? undefined : a;
    const ctx = typeof b === "object" ? b : context.active();
    const fn = (typeof a === "function" ? a : typeof b === "function" ? b : c) as F;
    return this.provider
      .tracerFor(ctx, this.name, this.version, this.options)
      .startActiveSpan(name, opts ?? {}, ctx, fn);
  }
}
