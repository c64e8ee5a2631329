import { createPrivateKey, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import { createSecureContext } from "node:tls";
import type { ConnectRouter, ConnectRouterOptions, Interceptor } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { context, ROOT_CONTEXT } from "@opentelemetry/api";
import { bearerAuthGate, bearerAuthInterceptor, type RequestGate, readTokensFile } from "./auth.js";
import { ConfigError, loadRuntimeConfig, type RuntimeConfig } from "./config.js";
import { HealthRegistry, healthRoutes } from "./health.js";
import { createLogger, type Logger } from "./logger.js";
import { serverTracingInterceptor } from "./rpc-tracing.js";
import { withService } from "./trace-provider.js";
import { initTracing, shutdownTracing } from "./tracing.js";
import { peerAwayInterceptor } from "./unavailable.js";

/** What a service gets from the runtime when it is created. */
export interface ServiceContext {
  /** Validated runtime configuration. */
  config: RuntimeConfig;
  /** Logger tagged with the service name. */
  logger: Logger;
  /** Environment the process was started with (services read their own variables from it). */
  env: Record<string, string | undefined>;
  /** Declares the service ready (weights loaded) or not; health reports SERVING only when ready. */
  setServing(serving: boolean): void;
  /** Aborted when shutdown begins: long-lived streams (Watch*) should end on it. */
  shutdownSignal: AbortSignal;
}

/** A created service: its routes and how to release what it holds. */
export interface ServiceInstance {
  /** Connect routes, e.g. `(router) => router.service(ScorerService, impl)`. */
  routes(router: ConnectRouter): void;
  /** Releases resources (connections, weights) after the server stopped. */
  close?(): Promise<void>;
}

/** One idpo service: a name, a default port and a factory. One per folder under services/. */
export interface ServiceDefinition {
  /** Short name, e.g. "scorer"; also used in env names (IDPO_SCORER_PORT, IDPO_SCORER_ADDR). */
  name: string;
  /** Port used when no IDPO_PORT / IDPO_<NAME>_PORT is set. */
  defaultPort: number;
  /** Fully-qualified gRPC service names served (health is reported per name and overall). */
  grpcServices: readonly string[];
  /** Creates the service. It calls `ctx.setServing(true)` once it can answer (possibly later, in the background). */
  create(ctx: ServiceContext): Promise<ServiceInstance> | ServiceInstance;
}

/** A built (not yet listening) server: routes and router options, usable with an in-memory transport. */
export interface BuiltServer {
  definition: ServiceDefinition;
  config: RuntimeConfig;
  logger: Logger;
  health: HealthRegistry;
  instance: ServiceInstance;
  /** All routes: the service's and grpc.health.v1. */
  routes(router: ConnectRouter): void;
  /** Interceptors, size limits and deadline cap, for `createRouterTransport(routes, { router: routerOptions })`. */
  routerOptions: ConnectRouterOptions;
  /** Answers a request from its headers before connect reads its body (unauthenticated calls). */
  gate?: RequestGate;
  /** Starts listening on config.host:config.port (HTTP/2, plus HTTP/1.1 for gRPC-Web and Connect). */
  listen(): Promise<ListeningServer>;
  /** Aborts `shutdownSignal` and ends health Watch streams. */
  beginShutdown(): void;
}

/** A listening server. */
export interface ListeningServer {
  /** The bound port (useful when config.port was 0). */
  port: number;
  /** http://host:port or https://host:port */
  url: string;
  /** Stops accepting calls, lets in-flight calls finish up to the grace period, then closes everything. */
  shutdown(): Promise<void>;
}

/** Options of `buildServer`. */
export interface BuildOptions {
  /** Environment to read; defaults to process.env. */
  env?: Record<string, string | undefined>;
  /** Overrides of the environment-derived configuration. */
  config?: Partial<RuntimeConfig>;
  /** Logger to use instead of a JSON logger on stderr. */
  logger?: Logger;
  /** Extra server interceptors (after auth and tracing). */
  interceptors?: Interceptor[];
}

/** Creates the service and its routes without listening (connect-es's build/listen split). */
export async function buildServer(def: ServiceDefinition, opts: BuildOptions = {}): Promise<BuiltServer> {
  const env = opts.env ?? process.env;
  const config = { ...loadRuntimeConfig(def.name, def.defaultPort, env), ...opts.config };
  const logger = opts.logger ?? createLogger(config.logLevel, { service: def.name });
  const health = new HealthRegistry(def.grpcServices);
  const shutdown = new AbortController();
  const interceptors: Interceptor[] = [serverTracingInterceptor(def.name)];
  const tokens = config.authTokensFile ? readTokensFile(config.authTokensFile) : undefined;
  if (tokens) interceptors.unshift(bearerAuthInterceptor(tokens));
  interceptors.push(...(opts.interceptors ?? []), peerAwayInterceptor());
  // What the service starts in the background (subscriptions, workers, resumed runs) is traced as its own.
  const instance = await context.with(withService(ROOT_CONTEXT, def.name), () =>
    def.create({
      config,
      logger,
      env,
      setServing: (serving) => {
        if (health.isClosed) return;
        health.setAll(serving);
        logger.info(serving ? "serving" : "not serving");
      },
      shutdownSignal: shutdown.signal,
    }),
  );
  const routes = (router: ConnectRouter) => {
    instance.routes(router);
    healthRoutes(health)(router);
  };
  const routerOptions: ConnectRouterOptions = {
    interceptors,
    readMaxBytes: config.maxMessageBytes,
    writeMaxBytes: config.maxMessageBytes,
    // connect treats a max of 0 as "no deadline allowed"; our 0 means "no cap".
    ...(config.maxTimeoutMs > 0 ? { maxTimeoutMs: config.maxTimeoutMs } : {}),
  };
  const built: BuiltServer = {
    definition: def,
    config,
    logger,
    health,
    instance,
    routes,
    routerOptions,
    gate: tokens ? bearerAuthGate(tokens) : undefined,
    beginShutdown: () => {
      if (!shutdown.signal.aborted) shutdown.abort();
      health.close();
    },
    listen: () => listen(built),
  };
  return built;
}

/** Reads one TLS file; an unreadable one is a ConfigError naming its variable. */
function readTlsFile(variable: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError(variable, `cannot read ${variable} ${path}: ${(err as Error).message}`);
  }
}

/**
 * The TLS server options from the certificate and key files, checked here (creating the server would
 * only say `DECODER routines::unsupported`): errors are ConfigErrors naming the variable.
 */
function tlsOptions(certFile: string, keyFile: string): http2.SecureServerOptions {
  const cert = readTlsFile("IDPO_TLS_CERT_FILE", certFile);
  const key = readTlsFile("IDPO_TLS_KEY_FILE", keyFile);
  try {
    createPrivateKey(key);
  } catch (err) {
    throw new ConfigError(
      "IDPO_TLS_KEY_FILE",
      `IDPO_TLS_KEY_FILE ${keyFile} is not a PEM private key: ${(err as Error).message}`,
    );
  }
  try {
    new X509Certificate(cert);
  } catch (err) {
    throw new ConfigError(
      "IDPO_TLS_CERT_FILE",
      `IDPO_TLS_CERT_FILE ${certFile} is not a PEM certificate: ${(err as Error).message}`,
    );
  }
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    throw new ConfigError(
      "IDPO_TLS_CERT_FILE",
      `IDPO_TLS_CERT_FILE ${certFile} and IDPO_TLS_KEY_FILE ${keyFile} do not form a key pair: ${(err as Error).message}`,
    );
  }
  return { cert, key, allowHTTP1: true };
}

async function listen(built: BuiltServer): Promise<ListeningServer> {
  const { config, logger } = built;
  const calls = countCalls(built);
  const tls = config.tlsCertFile !== undefined && config.tlsKeyFile !== undefined;
  const servers = tls
    ? secureServers(tlsOptions(config.tlsCertFile!, config.tlsKeyFile!), calls.handler)
    : plaintextServers(calls.handler);
  const sessions = new Set<http2.ServerHttp2Session>();
  servers.h2.on("session", (s) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
  });
  const { listener, h1 } = servers;
  await new Promise<void>((resolve, reject) => {
    listener.once("error", reject);
    listener.listen(config.port, config.host, () => {
      listener.off("error", reject);
      resolve();
    });
  });
  const addr = listener.address() as net.AddressInfo;
  const host = config.host === "0.0.0.0" || config.host === "::" ? "127.0.0.1" : config.host;
  const url = `${tls ? "https" : "http"}://${host}:${addr.port}`;
  logger.info("listening", { port: addr.port, tls, url });

  let stopping: Promise<void> | undefined;
  const shutdown = () => {
    stopping ??= (async () => {
      logger.info("shutting down", { inFlight: calls.inFlight(), graceMs: config.shutdownGraceMs });
      built.beginShutdown();
      listener.close();
      if (h1) h1.close();
      // GOAWAY: in-flight streams finish, new streams on existing connections are refused.
      for (const s of sessions) s.close();
      h1?.closeIdleConnections();
      await calls.idle(config.shutdownGraceMs);
      if (calls.inFlight() > 0)
        logger.warn("grace period over: closing remaining calls", { inFlight: calls.inFlight() });
      for (const s of sessions) s.destroy();
      h1?.closeAllConnections();
      await built.instance.close?.();
      logger.info("stopped");
    })();
    return stopping;
  };
  return { port: addr.port, url, shutdown };
}

type RequestHandler = (
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
) => void;

/**
 * The server's request handler (its gate, then its routes), counting the calls in flight so that shutdown
 * can wait for them: `idle(ms)` resolves when none is left or after `ms`.
 */
function countCalls(built: BuiltServer): {
  handler: RequestHandler;
  inFlight(): number;
  idle(graceMs: number): Promise<void>;
} {
  let inFlight = 0;
  let idle: (() => void) | undefined;
  const routes = connectNodeAdapter({ routes: built.routes, ...built.routerOptions });
  const handler: RequestHandler = (req, res) => {
    inFlight++;
    res.once("close", () => {
      inFlight--;
      if (inFlight === 0) idle?.();
    });
    if (built.gate?.(req, res)) return;
    routes(req as http2.Http2ServerRequest, res as http2.Http2ServerResponse);
  };
  return {
    handler,
    inFlight: () => inFlight,
    idle: async (graceMs) => {
      if (inFlight === 0) return;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, graceMs);
        idle = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    },
  };
}

/** The HTTP servers of one port and the socket listener in front of them. */
interface PortServers {
  h2: http2.Http2Server | http2.Http2SecureServer;
  h1?: http.Server;
  listener: net.Server;
}

/** TLS: one HTTP/2 server that also answers HTTP/1.1 (ALPN). */
function secureServers(options: http2.SecureServerOptions, handler: RequestHandler): PortServers {
  const h2 = http2.createSecureServer(options, handler);
  return { h2, listener: h2 };
}

/**
 * Plaintext: HTTP/2 with prior knowledge (gRPC) and HTTP/1.1 (gRPC-Web, Connect) share one port; the first
 * bytes of a connection tell them apart.
 */
function plaintextServers(handler: RequestHandler): PortServers {
  const h2 = http2.createServer({}, handler);
  const h1 = http.createServer(handler);
  const listener = net.createServer((socket) => {
    const route = () => {
      const head: Buffer | null = socket.read();
      if (head === null) return;
      if (head.length < 3 && head.toString("latin1") === "PRI".slice(0, head.length)) {
        socket.unshift(head);
        socket.once("readable", route);
        return;
      }
      socket.unshift(head);
      (head.toString("latin1", 0, 3) === "PRI" ? h2 : h1).emit("connection", socket);
    };
    socket.once("readable", route);
    socket.on("error", () => socket.destroy());
  });
  return { h2, h1, listener };
}

/**
 * Runs services until SIGTERM/SIGINT, then shuts them down gracefully and exits 0.
 * A configuration error exits 2 with a message naming the variable.
 */
export async function runServices(
  defs: readonly ServiceDefinition[],
  opts: BuildOptions = {},
): Promise<ListeningServer[]> {
  const env = opts.env ?? process.env;
  const first = defs[0] ? loadRuntimeConfig(defs[0].name, defs[0].defaultPort, env) : undefined;
  initTracing({
    serviceName: defs.length === 1 ? `idpo-${defs[0].name}` : "idpo",
    endpoint: first?.otlpEndpoint,
    protocol: first?.otlpProtocol,
    logger: opts.logger,
    env,
  });
  const servers: ListeningServer[] = [];
  for (const def of defs) {
    const built = await buildServer(def, opts);
    servers.push(await built.listen());
  }
  let signalled = false;
  const onSignal = (sig: string) => {
    if (signalled) return;
    signalled = true;
    process.stderr.write(
      `${JSON.stringify({ time: new Date().toISOString(), level: "info", msg: `received ${sig}` })}\n`,
    );
    Promise.all(servers.map((s) => s.shutdown()))
      .then(() => shutdownTracing())
      .then(
        () => process.exit(0),
        (err) => {
          process.stderr.write(`shutdown failed: ${(err as Error).message}\n`);
          process.exit(1);
        },
      );
  };
  process.once("SIGTERM", () => onSignal("SIGTERM"));
  process.once("SIGINT", () => onSignal("SIGINT"));
  return servers;
}
