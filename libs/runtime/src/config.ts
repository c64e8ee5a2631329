/** Configuration from environment variables, validated at start. */

/** Raised when an environment variable has an invalid value; the message names it and the accepted form. */
export class ConfigError extends Error {
  constructor(
    /** The offending variable. */
    readonly variable: string,
    message: string,
  ) {
    super(message);
    this.name = "ConfigError";
  }
}

type Env = Record<string, string | undefined>;

function raw(env: Env, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v.trim() === "" ? undefined : v.trim();
}

/** An integer in [min, max]; `fallback` when unset. */
export function envInt(env: Env, name: string, fallback: number, min: number, max: number): number {
  const v = raw(env, name);
  if (v === undefined) return fallback;
  if (!/^-?\d+$/.test(v)) {
    throw new ConfigError(
      name,
      `${name}=${JSON.stringify(v)} is not valid: expected an integer in [${min}, ${max}]`,
    );
  }
  const n = Number(v);
  if (n < min || n > max) {
    throw new ConfigError(name, `${name}=${v} is out of range: expected an integer in [${min}, ${max}]`);
  }
  return n;
}

/** One of `choices`; `fallback` when unset. */
export function envEnum<T extends string>(env: Env, name: string, fallback: T, choices: readonly T[]): T {
  const v = raw(env, name);
  if (v === undefined) return fallback;
  if (!(choices as readonly string[]).includes(v)) {
    throw new ConfigError(
      name,
      `${name}=${JSON.stringify(v)} is not valid: expected one of ${choices.join(", ")}`,
    );
  }
  return v as T;
}

/** A free-form string; undefined when unset. */
export function envString(env: Env, name: string): string | undefined {
  return raw(env, name);
}

/** A URL with one of the given protocols (e.g. "http:"); undefined when unset. */
export function envUrl(env: Env, name: string, protocols: readonly string[]): string | undefined {
  const v = raw(env, name);
  if (v === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(v);
  } catch {
    throw new ConfigError(
      name,
      `${name}=${JSON.stringify(v)} is not a URL: expected e.g. ${protocols[0]}//host:port`,
    );
  }
  if (!protocols.includes(url.protocol)) {
    throw new ConfigError(
      name,
      `${name}=${JSON.stringify(v)} has protocol ${url.protocol}: expected one of ${protocols.join(", ")}`,
    );
  }
  return v;
}

/** Encodings of OTLP over HTTP (OTEL_EXPORTER_OTLP_PROTOCOL). */
export type OtlpProtocol = "http/protobuf" | "http/json";
export const OTLP_PROTOCOLS: readonly OtlpProtocol[] = ["http/protobuf", "http/json"];

/** Log verbosity. */
export type LogLevel = "debug" | "info" | "warn" | "error";
export const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error"];

/** Settings every service process reads from its environment. */
export interface RuntimeConfig {
  /** Interface to bind (IDPO_HOST, default 0.0.0.0). */
  host: string;
  /** Port to listen on (IDPO_PORT, else IDPO_<SERVICE>_PORT, else the service's default port). */
  port: number;
  /** Log verbosity (IDPO_LOG_LEVEL, default info). */
  logLevel: LogLevel;
  /** Largest request or response message in bytes (IDPO_MAX_MESSAGE_BYTES, default 64 MiB). */
  maxMessageBytes: number;
  /** How long in-flight calls may run after SIGTERM before the process exits (IDPO_SHUTDOWN_GRACE_MS, default 10000). */
  shutdownGraceMs: number;
  /** Upper bound on any call's deadline in ms; 0 = none (IDPO_MAX_TIMEOUT_MS, default 0). */
  maxTimeoutMs: number;
  /** PEM certificate file for TLS (IDPO_TLS_CERT_FILE); TLS is on when both cert and key are set. */
  tlsCertFile?: string;
  /** PEM private key file for TLS (IDPO_TLS_KEY_FILE). */
  tlsKeyFile?: string;
  /** File with accepted bearer tokens, one per line (IDPO_AUTH_TOKENS_FILE); unset = no authentication. */
  authTokensFile?: string;
  /** OTLP/HTTP collector endpoint (OTEL_EXPORTER_OTLP_ENDPOINT); unset = tracing off. */
  otlpEndpoint?: string;
  /** How spans are encoded for it (OTEL_EXPORTER_OTLP_PROTOCOL, default http/protobuf as in OpenTelemetry). */
  otlpProtocol: OtlpProtocol;
}

/**
 * Reads the runtime configuration of service `service` from `env`.
 * @throws ConfigError naming the first invalid variable.
 */
export function loadRuntimeConfig(
  service: string,
  defaultPort: number,
  env: Env = process.env,
): RuntimeConfig {
  const specificPort = `IDPO_${service.toUpperCase()}_PORT`;
  const port =
    raw(env, "IDPO_PORT") !== undefined
      ? envInt(env, "IDPO_PORT", defaultPort, 0, 65535)
      : envInt(env, specificPort, defaultPort, 0, 65535);
  const tlsCertFile = envString(env, "IDPO_TLS_CERT_FILE");
  const tlsKeyFile = envString(env, "IDPO_TLS_KEY_FILE");
  if ((tlsCertFile === undefined) !== (tlsKeyFile === undefined)) {
    const missing = tlsCertFile === undefined ? "IDPO_TLS_CERT_FILE" : "IDPO_TLS_KEY_FILE";
    throw new ConfigError(
      missing,
      `${missing} is unset: TLS needs both IDPO_TLS_CERT_FILE and IDPO_TLS_KEY_FILE`,
    );
  }
  return {
    host: envString(env, "IDPO_HOST") ?? "0.0.0.0",
    port,
    logLevel: envEnum(env, "IDPO_LOG_LEVEL", "info", LOG_LEVELS),
    maxMessageBytes: envInt(env, "IDPO_MAX_MESSAGE_BYTES", 64 * 1024 * 1024, 1024, 2 ** 31 - 1),
    shutdownGraceMs: envInt(env, "IDPO_SHUTDOWN_GRACE_MS", 10_000, 0, 3_600_000),
    maxTimeoutMs: envInt(env, "IDPO_MAX_TIMEOUT_MS", 0, 0, 2 ** 31 - 1),
    tlsCertFile,
    tlsKeyFile,
    authTokensFile: envString(env, "IDPO_AUTH_TOKENS_FILE"),
    otlpEndpoint: envUrl(env, "OTEL_EXPORTER_OTLP_ENDPOINT", ["http:", "https:"]),
    otlpProtocol: envEnum(env, "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf", OTLP_PROTOCOLS),
  };
}
