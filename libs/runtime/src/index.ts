/**
 * The service runtime every idpo service uses: a Connect server on HTTP/2 that speaks gRPC, gRPC-Web and
 * Connect, grpc.health.v1, graceful shutdown, env configuration, JSON logs, tracing, TLS and bearer auth,
 * plus clients for peers.
 */

/** A trace context (OpenTelemetry's), for code that keeps one without depending on the API itself. */
export type { Context as TraceContext } from "@opentelemetry/api";
export { bearerAuthInterceptor, bearerTokenClientInterceptor, readTokensFile } from "./auth.js";
export {
  createPeerTransport,
  DEFAULT_PORTS,
  type MeshService,
  type PeerTransportOptions,
  peerAddress,
} from "./client.js";
export {
  ConfigError,
  envEnum,
  envInt,
  envString,
  envUrl,
  LOG_LEVELS,
  type LogLevel,
  loadRuntimeConfig,
  OTLP_PROTOCOLS,
  type OtlpProtocol,
  type RuntimeConfig,
} from "./config.js";
export { HealthRegistry, healthRoutes, ServingStatus } from "./health.js";
export { labelledSeed } from "./labelled-seed.js";
export { createLogger, type Logger, type LogSink } from "./logger.js";
export {
  DEFAULT_PAGE_SIZE,
  MAX_PAGE_SIZE,
  type PageCursor,
  type PageRequest,
  pageNewestFirst,
  timestampNanos,
} from "./pagination.js";
export { backoffMs, isTransient, type RetryOptions, retryTransient, sleep } from "./retry.js";
export { clientTracingInterceptor, serverTracingInterceptor } from "./rpc-tracing.js";
export { runContext, runSpanContext, runTraceId } from "./run-trace.js";
export {
  type BuildOptions,
  type BuiltServer,
  buildServer,
  type ListeningServer,
  runServices,
  type ServiceContext,
  type ServiceDefinition,
  type ServiceInstance,
} from "./server.js";
export { serviceOf, withService } from "./trace-provider.js";
export {
  flushTracing,
  initTracing,
  shutdownTracing,
  startSpanWithIds,
  type TracingOptions,
  tracer,
  withSpan,
} from "./tracing.js";
