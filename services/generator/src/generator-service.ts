import { create } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  createClient,
  type HandlerContext,
  type Transport,
} from "@connectrpc/connect";
import type { Bus, Subscription, TerminationReport } from "@idpo/bus";
import {
  CheckpointStore,
  createServiceModelHost,
  imagesToMessages,
  type ModelHost,
  type ModelLease,
  type ModelServiceDeps,
  type PairPixelDtype,
  replicaConsumerName,
  type ServedModel,
  samplingEngineFromEnv,
  sharedBus,
} from "@idpo/mesh";
import {
  type CheckpointRef,
  type GeneratedImage,
  GeneratedImageSchema,
  type GenerateImagesRequest,
  GenerateImagesResponseSchema,
  type GenerateImagesStreamRequest,
  GenerateImagesStreamResponseSchema,
  GeneratorService,
  generatorV1,
  ImproverService,
} from "@idpo/proto";
import {
  createPeerTransport,
  envEnum,
  envInt,
  envString,
  peerAddress,
  type ServiceDefinition,
} from "@idpo/runtime";
import { type ParsedSpec, parseGenerationSpec } from "./generation-spec.js";
import { type ShardOutcome, startShardWorker } from "./shard-worker.js";

/** Generator settings (from the environment by {@link generatorConfigFromEnv}). */
export interface GeneratorConfig {
  /** Images per policy forward pass, and the default stream chunk (IDPO_GENERATOR_BATCH, default 32). */
  batchSize: number;
  /** Most images per GenerateImages call (IDPO_GENERATOR_MAX_IMAGES, default 1024). */
  maxImages: number;
  /** Most images per GenerateImagesStream call (IDPO_GENERATOR_MAX_STREAM_IMAGES, default 65536). */
  maxStreamImages: number;
  /** Policy checkpoint loaded at start (IDPO_GENERATOR_CHECKPOINT); none when undefined. */
  checkpointId?: string;
  /** Pair shards worked at once; 0 disables the worker (IDPO_GENERATOR_WORKERS, default 1). */
  workers: number;
  /** Pixel encoding of stored pair shards (IDPO_GENERATOR_PAIR_DTYPE: uint8 | float16 | float32, default uint8). */
  pairDtype: PairPixelDtype;
  /** Heartbeat interval while a shard is in progress, ms (IDPO_GENERATOR_HEARTBEAT_MS, default 5000). */
  heartbeatMs: number;
  /** Most images per ImproveImages call of the shard worker (IDPO_GENERATOR_IMPROVE_CHUNK, default 64). */
  improveChunk: number;
  /** Deadline of each ImproveImages call, ms (IDPO_GENERATOR_IMPROVE_TIMEOUT_MS, default 600000). */
  improveTimeoutMs: number;
  /** How long a shard keeps retrying an Improver that is down or overloaded before the delivery fails, ms
   * (IDPO_GENERATOR_PEER_RETRY_S, default 600 s, as long as the controller waits for its peers). */
  peerRetryMs: number;
}

/** Reads the generator's settings from the environment (errors name the variable). */
export function generatorConfigFromEnv(env: Record<string, string | undefined>): GeneratorConfig {
  return {
    batchSize: envInt(env, "IDPO_GENERATOR_BATCH", 32, 1, 4096),
    maxImages: envInt(env, "IDPO_GENERATOR_MAX_IMAGES", 1024, 1, 1_048_576),
    maxStreamImages: envInt(env, "IDPO_GENERATOR_MAX_STREAM_IMAGES", 65_536, 1, 1_048_576),
    checkpointId: envString(env, "IDPO_GENERATOR_CHECKPOINT"),
    workers: envInt(env, "IDPO_GENERATOR_WORKERS", 1, 0, 64),
    pairDtype: envEnum(env, "IDPO_GENERATOR_PAIR_DTYPE", "uint8", ["uint8", "float16", "float32"] as const),
    heartbeatMs: envInt(env, "IDPO_GENERATOR_HEARTBEAT_MS", 5000, 100, 600_000),
    improveChunk: envInt(env, "IDPO_GENERATOR_IMPROVE_CHUNK", 64, 1, 1024),
    improveTimeoutMs: envInt(env, "IDPO_GENERATOR_IMPROVE_TIMEOUT_MS", 600_000, 1000, 86_400_000),
    peerRetryMs: envInt(env, "IDPO_GENERATOR_PEER_RETRY_S", 600, 0, 86_400) * 1000,
  };
}

/** What the generator is built from (the model host's part: ModelServiceDeps); the service definition wires the real ones. */
export interface GeneratorDeps extends ModelServiceDeps {
  config: GeneratorConfig;
  /** Bus for checkpoint events and the pair-shard work queue; without it neither runs. */
  bus?: Pick<Bus, "events" | "work" | "artifacts">;
  /** Transport to the Improver (required for the shard worker). */
  improverTransport?: Transport;
  /** Called after each acked shard (tests, metrics). */
  onShard?: (outcome: ShardOutcome) => void;
  /** Called when a shard was terminated (malformed, or max_deliver reached). */
  onShardTerminated?: (report: TerminationReport) => void;
}

/** Counters of a generator. */
export interface GeneratorStats {
  /** Images returned by GenerateImages / GenerateImagesStream. */
  imagesGenerated: number;
  /** Shards whose pairs this process stored. */
  shardsStored: number;
  /** Shards found already stored (pairs_ready published again). */
  shardsRepublished: number;
  /** Shards terminated (seen by this process). */
  shardsTerminated: number;
}

/** A running generator. */
export interface Generator {
  /** Connect routes of idpo.generator.v1.GeneratorService. */
  routes(router: ConnectRouter): void;
  /** Loads policy checkpoint `id` and makes it current (in-flight requests finish on the old weights). */
  loadCheckpoint(id: string): Promise<CheckpointRef>;
  /** The loaded checkpoint, if any. */
  current(): CheckpointRef | undefined;
  /** Settles when the start-up checkpoint (if any) has loaded or failed to. */
  ready: Promise<void>;
  stats(): GeneratorStats;
  /** Stops the worker and subscription (running shards finish or are abandoned), frees the weights. */
  close(): Promise<void>;
}

const MAX_CHUNK = 4096;

function noWeights(): ConnectError {
  return new ConnectError(
    "no policy weights loaded: set IDPO_GENERATOR_CHECKPOINT or call LoadCheckpoint",
    Code.FailedPrecondition,
  );
}

function checkCheckpoint(p: ParsedSpec, lease: ModelLease<ServedModel>): void {
  if (p.checkpointId !== "" && p.checkpointId !== lease.ref.id) {
    throw new ConnectError(
      `spec.checkpoint_id: ${JSON.stringify(p.checkpointId)} is not loaded (the generator holds ${JSON.stringify(lease.ref.id)})`,
      Code.FailedPrecondition,
    );
  }
}

/**
 * Creates the generator: it loads `config.checkpointId` in the background (health NOT_SERVING until a
 * policy is loaded), reloads on final POLICY checkpoint.published events and works pair shards from the
 * work queue when given a bus (and an improver transport).
 */
export async function createGenerator(deps: GeneratorDeps): Promise<Generator> {
  const { config } = deps;
  const stats: GeneratorStats = {
    imagesGenerated: 0,
    shardsStored: 0,
    shardsRepublished: 0,
    shardsTerminated: 0,
  };
  const host = await createServiceModelHost("generator", "policy", deps);
  const subscriptions = await startWorkers(deps, host, stats);
  return {
    routes: generatorRoutes(config, host, stats),
    loadCheckpoint: host.loadCheckpoint,
    current: () => host.slot.current,
    ready: host.ready,
    stats: () => ({ ...stats }),
    async close() {
      for (const s of subscriptions) await s.stop({ timeoutMs: 10_000 });
      await host.close();
    },
  };
}

/** The pair-shard worker, when the generator has a bus and workers; it counts its shards into `stats`. */
async function startWorkers(
  deps: GeneratorDeps,
  host: ModelHost,
  stats: GeneratorStats,
): Promise<Subscription[]> {
  const { config } = deps;
  if (!deps.bus || config.workers <= 0) return [];
  if (!deps.improverTransport)
    throw new Error("createGenerator: the shard worker needs an improver transport");
  const worker = await startShardWorker({
    config,
    bus: deps.bus,
    slot: host.slot,
    loadPolicy: host.loadModel,
    improver: createClient(ImproverService, deps.improverTransport),
    logger: deps.logger,
    onShard: (o) => {
      if (o.republished) stats.shardsRepublished++;
      else stats.shardsStored++;
      deps.onShard?.(o);
    },
    onTerminated: (r) => {
      stats.shardsTerminated++;
      deps.onShardTerminated?.(r);
    },
  });
  return [worker];
}

/** Samples images [start, end) of a parsed spec on a leased model, `batchSize` per forward pass. */
async function sampleRange(
  lease: ModelLease<ServedModel>,
  p: ParsedSpec,
  range: { start: number; end: number; batchSize: number },
  signal: AbortSignal,
): Promise<GeneratedImage[]> {
  const { start, end } = range;
  const batch = await lease.model.sample({
    prompts: p.prompts.slice(start, end),
    seeds: p.seeds.slice(start, end),
    steps: p.steps,
    guidanceScale: p.guidanceScale,
    sampler: p.sampler,
    eta: p.eta,
    batchSize: range.batchSize,
    signal,
  });
  return imagesToMessages(batch, p.format).map((image, i) =>
    create(GeneratedImageSchema, {
      image,
      promptIndex: p.promptIndex[start + i],
      seed: BigInt(p.seeds[start + i]),
    }),
  );
}

/** The GeneratorService handlers over the model host; sampled images are counted into `stats`. */
function generatorRoutes(
  config: GeneratorConfig,
  host: ModelHost,
  stats: GeneratorStats,
): (router: ConnectRouter) => void {
  const { slot } = host;
  const generate = async (
    lease: ModelLease<ServedModel>,
    p: ParsedSpec,
    start: number,
    end: number,
    signal: AbortSignal,
  ) => {
    const images = await sampleRange(lease, p, { start, end, batchSize: config.batchSize }, signal);
    stats.imagesGenerated += images.length;
    return images;
  };
  return (router: ConnectRouter) =>
    router.service(GeneratorService, {
      async generateImages(req: GenerateImagesRequest, ctx: HandlerContext) {
        const lease = slot.acquire();
        if (!lease) throw noWeights();
        try {
          const p = parseGenerationSpec(req.spec, config.maxImages, "GenerateImages");
          checkCheckpoint(p, lease);
          const images = await generate(lease, p, 0, p.prompts.length, ctx.signal);
          return create(GenerateImagesResponseSchema, { images, checkpoint: lease.ref });
        } finally {
          lease.release();
        }
      },

      async *generateImagesStream(req: GenerateImagesStreamRequest, ctx: HandlerContext) {
        const lease = slot.acquire();
        if (!lease) throw noWeights();
        try {
          const p = parseGenerationSpec(req.spec, config.maxStreamImages, "GenerateImagesStream");
          checkCheckpoint(p, lease);
          const chunk = streamChunk(req.chunkSize, config.batchSize);
          const total = p.prompts.length;
          for (let s = 0; s < total; s += chunk) {
            const e = Math.min(total, s + chunk);
            const images = await generate(lease, p, s, e, ctx.signal);
            yield create(GenerateImagesStreamResponseSchema, {
              images,
              checkpoint: lease.ref,
              done: e,
              total,
            });
          }
        } finally {
          lease.release();
        }
      },

      getModel() {
        return create(generatorV1.GetModelResponseSchema, host.describe());
      },

      async loadCheckpoint(req: generatorV1.LoadCheckpointRequest) {
        const ref = await host.loadCheckpoint(req.checkpointId);
        return create(generatorV1.LoadCheckpointResponseSchema, { checkpoint: ref });
      },
    });
}

/** Images per stream message: the request's chunk_size (at most MAX_CHUNK), or the batch size when 0. */
function streamChunk(chunkSize: number, batchSize: number): number {
  if (chunkSize > MAX_CHUNK)
    throw new ConnectError(`chunk_size: ${chunkSize} is more than ${MAX_CHUNK}`, Code.InvalidArgument);
  return chunkSize === 0 ? batchSize : chunkSize;
}

/** Dependencies a test (or an embedding program) can supply instead of the process-wide ones. */
export interface GeneratorOverrides {
  /** Bus for events, work and artifacts; default the process-wide `sharedBus()`. */
  bus?: Bus;
  /** Checkpoint store; default one over `bus.artifacts`. */
  checkpoints?: CheckpointStore;
  /** Transport to the Improver; default `createPeerTransport(peerAddress("improver"))`. */
  improverTransport?: Transport;
  /** Transport to the inference sidecar (IDPO_INFERENCE=sidecar); default one to IDPO_INFERENCE_ADDR. */
  inferenceTransport?: Transport;
  /** Called after each acked shard. */
  onShard?: (outcome: ShardOutcome) => void;
}

/** The Generator's service definition, optionally over given dependencies. */
export function generatorDefinition(overrides: GeneratorOverrides = {}): ServiceDefinition {
  return {
    name: "generator",
    defaultPort: 50051,
    grpcServices: [GeneratorService.typeName],
    async create(ctx) {
      const config = generatorConfigFromEnv(ctx.env);
      const bus = overrides.bus ?? (await sharedBus());
      const engine = await samplingEngineFromEnv(ctx.env, {
        checkpoints: overrides.checkpoints ?? new CheckpointStore(bus.artifacts),
        inferenceTransport: overrides.inferenceTransport,
        logger: ctx.logger,
      });
      const owned = overrides.improverTransport
        ? undefined
        : createPeerTransport(peerAddress("improver", ctx.env));
      const generator = await createGenerator({
        config,
        engine: engine.engine,
        bus,
        improverTransport: overrides.improverTransport ?? owned,
        consumerName: replicaConsumerName("generator"),
        logger: ctx.logger,
        setServing: ctx.setServing,
        onShard: overrides.onShard,
      });
      return {
        routes: generator.routes,
        close: async () => {
          await generator.close();
          owned?.close();
          engine.close();
        },
      };
    },
  };
}

/** The Generator (idpo.generator.v1.GeneratorService, port 50051) over the process-wide bus. */
export const generatorService: ServiceDefinition = generatorDefinition();
