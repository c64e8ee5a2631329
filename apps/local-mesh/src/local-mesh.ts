import { type RunningDashboard, startDashboard } from "@idpo/dashboard";
import { closeSharedBus } from "@idpo/mesh";
import {
  buildServer,
  initTracing,
  type ListeningServer,
  type Logger,
  loadRuntimeConfig,
  type MeshService,
  shutdownTracing,
} from "@idpo/runtime";
import { loadService, SERVICE_NAMES } from "./services.js";

/** The services (the five and the inference sidecar) running in this process on loopback ports, sharing the embedded bus. */
export interface LocalMesh {
  /** Address of each service (http://127.0.0.1:<port>). */
  urls: Record<MeshService, string>;
  /** Stops every service (dependents first) and closes the shared bus. */
  shutdown(): Promise<void>;
}

/** Options of {@link startLocalMesh}. */
export interface LocalMeshOptions {
  /** Directory of the embedded bus (state, streams, artifacts) and of the services' caches. */
  dataDir: string;
  /** Logger given to every service (tagged with its name); trace export failures are logged there too. */
  logger: Logger;
  /** `service.name` of the command's own spans (its calls into the mesh); default idpo. */
  serviceName?: string;
}

/**
 * Starts generator, improver, trainer, scorer, controller and the inference sidecar in this process with real
 * gRPC servers on free loopback ports, on the embedded bus under `dataDir` (IDPO_NATS_URL is ignored); the
 * Generator, the Improver and the Trainer's SPIN jobs sample through the sidecar unless IDPO_INFERENCE is
 * "in-process". Services start
 * in dependency order, each on port 0; once one listens, IDPO_<SERVICE>_ADDR points at its real port, so
 * services created after it find it (and no port is chosen before it is bound). With
 * OTEL_EXPORTER_OTLP_ENDPOINT set, spans are exported with one `service.name` per service; shutdown sends
 * the last ones (a collector that is gone costs at most 15 s, never an error).
 */
export async function startLocalMesh(opts: LocalMeshOptions): Promise<LocalMesh> {
  const env = process.env;
  delete env.IDPO_NATS_URL;
  env.IDPO_DATA_DIR = opts.dataDir;
  // The embedded mesh starts its own inference sidecar, so the Generator, the Improver and SPIN's losers are
  // sampled on its ONNX Runtime engine unless the user asked for in-process tfjs.
  env.IDPO_INFERENCE ||= "sidecar";
  const { otlpEndpoint, otlpProtocol } = loadRuntimeConfig("mesh", 0, env);
  const tracing = initTracing({
    serviceName: opts.serviceName ?? "idpo",
    endpoint: otlpEndpoint,
    protocol: otlpProtocol,
    logger: opts.logger.child({ component: "tracing" }),
    env,
  });
  const servers: ListeningServer[] = [];
  const urls = {} as Record<MeshService, string>;
  const shutdown = async () => {
    for (const s of [...servers].reverse()) await s.shutdown();
    servers.length = 0;
    await closeSharedBus();
    if (tracing) await shutdownTracing();
  };
  try {
    for (const name of SERVICE_NAMES) {
      const def = await loadService(name);
      const built = await buildServer(def, {
        env,
        config: { host: "127.0.0.1", port: 0 },
        logger: opts.logger.child({ service: name }),
      });
      const server = await built.listen();
      servers.push(server);
      urls[name] = server.url;
      env[`IDPO_${name.toUpperCase()}_ADDR`] = server.url;
    }
  } catch (err) {
    await shutdown().catch(() => undefined);
    throw err;
  }
  return { urls, shutdown };
}

/**
 * Serves the run dashboard for a local mesh on 127.0.0.1:`port`, or on a free port when that one is taken
 * (two commands side by side each get one).
 */
export async function serveLocalDashboard(
  port: number,
  urls: Record<MeshService, string>,
): Promise<RunningDashboard> {
  try {
    return await startDashboard({ host: "127.0.0.1", port, peers: urls });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EADDRINUSE" || port === 0) throw err;
    return await startDashboard({ host: "127.0.0.1", port: 0, peers: urls });
  }
}
