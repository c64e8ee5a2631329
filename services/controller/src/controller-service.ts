import { createClient } from "@connectrpc/connect";
import type { Bus } from "@idpo/bus";
import { CheckpointStore, seedPretrained, sharedBus } from "@idpo/mesh";
import { ControllerService, GeneratorService, ScorerService, TrainerService } from "@idpo/proto";
import {
  createPeerTransport,
  envInt,
  envString,
  peerAddress,
  type ServiceContext,
  type ServiceDefinition,
} from "@idpo/runtime";
import { controllerRoutes } from "./controller-routes.js";
import { type ControllerOptions, DEFAULT_CONTROLLER_OPTIONS, type Peers } from "./driver-deps.js";
import { RunManager } from "./run-manager.js";
import { RunStore } from "./run-store.js";
import { subscribeShardEvents } from "./shard-events.js";

/** Reads the controller's timings from its environment (IDPO_CONTROLLER_*). */
export function controllerOptionsFromEnv(env: Record<string, string | undefined>): ControllerOptions {
  const d = DEFAULT_CONTROLLER_OPTIONS;
  return {
    progressIntervalMs: envInt(env, "IDPO_CONTROLLER_PROGRESS_MS", d.progressIntervalMs, 0, 3_600_000),
    peerRetryMs: envInt(env, "IDPO_CONTROLLER_PEER_RETRY_S", d.peerRetryMs / 1000, 1, 86_400) * 1000,
    loadWaitMs: envInt(env, "IDPO_CONTROLLER_LOAD_WAIT_MS", d.loadWaitMs, 0, 3_600_000),
    jobPollMs: envInt(env, "IDPO_CONTROLLER_JOB_POLL_MS", d.jobPollMs, 10, 600_000),
    leaseMs: envInt(env, "IDPO_CONTROLLER_LEASE_SECONDS", d.leaseMs / 1000, 1, 3600) * 1000,
  };
}

/** What a controller can be given instead of what it would build from its environment (tests). */
export interface ControllerOverrides {
  /** The bus; default the process-wide shared bus. */
  bus?: () => Promise<Bus>;
  /** Peer clients; default gRPC clients of IDPO_TRAINER_ADDR, IDPO_GENERATOR_ADDR, IDPO_SCORER_ADDR. */
  peers?: Peers;
  /** Timings; default from the environment. */
  options?: Partial<ControllerOptions>;
}

async function createController(ctx: ServiceContext, overrides: ControllerOverrides) {
  const options = { ...controllerOptionsFromEnv(ctx.env), ...overrides.options };
  const bus = await (overrides.bus ?? sharedBus)();
  const closers: (() => void)[] = [];
  let peers = overrides.peers;
  if (!peers) {
    const token = envString(ctx.env, "IDPO_AUTH_TOKEN");
    const transport = (svc: "trainer" | "generator" | "scorer") => {
      const t = createPeerTransport(peerAddress(svc, ctx.env), { token });
      closers.push(() => t.close());
      return t;
    };
    peers = {
      trainer: createClient(TrainerService, transport("trainer")),
      generator: createClient(GeneratorService, transport("generator")),
      scorer: createClient(ScorerService, transport("scorer")),
    };
  }
  const store = new RunStore(bus.state);
  const checkpoints = new CheckpointStore(bus.artifacts);
  // The shipped checkpoints (models/) become ids that any run can start from.
  const seeded = await seedPretrained(checkpoints);
  if (seeded.length > 0) ctx.logger.info("pretrained checkpoints stored", { ids: seeded });
  const manager = new RunManager({ store, bus, peers, checkpoints, logger: ctx.logger, options });
  const subscriptions = await subscribeShardEvents(bus, store, ctx.logger);
  const routes = controllerRoutes({
    store,
    bus,
    manager,
    peers,
    checkpoints,
    logger: ctx.logger,
    shutdownSignal: ctx.shutdownSignal,
  });
  // Drivers stop when shutdown begins, so that no stage starts while the server drains.
  ctx.shutdownSignal.addEventListener("abort", () => void manager.close(), { once: true });
  const resumed = await manager.resumeAll();
  if (resumed > 0) ctx.logger.info("resumed unfinished runs", { runs: resumed });
  ctx.setServing(true);
  return {
    routes,
    async close() {
      await manager.close();
      for (const s of subscriptions) await s.stop({ timeoutMs: 5_000 });
      for (const c of closers) c();
    },
  };
}

/** The Controller's service definition, optionally over given dependencies (tests, embedding). */
export function controllerDefinition(overrides: ControllerOverrides = {}): ServiceDefinition {
  return {
    name: "controller",
    defaultPort: 50055,
    grpcServices: [ControllerService.typeName],
    create: (ctx) => createController(ctx, overrides),
  };
}

/** The Controller: creates runs and drives them through base → improver → K × (pairs → DPO → evaluation). */
export const controllerService: ServiceDefinition = controllerDefinition();
