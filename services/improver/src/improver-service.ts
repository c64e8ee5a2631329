import { create } from "@bufbuild/protobuf";
import type { Transport } from "@connectrpc/connect";
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import type { Bus } from "@idpo/bus";
import type { SamplerKind } from "@idpo/diffusion";
import {
  type BatcherStats,
  CheckpointStore,
  createServiceModelHost,
  DynamicBatcher,
  imagesFromMessages,
  imagesToMessages,
  type ModelHost,
  type ModelLease,
  type ModelServiceDeps,
  replicaConsumerName,
  type ServedModel,
  samplingEngineFromEnv,
  sharedBus,
} from "@idpo/mesh";
import {
  type CheckpointRef,
  ImageFormat,
  type ImproveImagesRequest,
  ImproveImagesResponseSchema,
  ImproverService,
  improverV1,
  Sampler,
} from "@idpo/proto";
import { envInt, envString, type ServiceDefinition } from "@idpo/runtime";

/** Improver settings (from the environment by {@link improverConfigFromEnv}). */
export interface ImproverConfig {
  /** Most images run together in one batch (IDPO_IMPROVER_MAX_BATCH, default 32). */
  maxBatch: number;
  /** Longest a queued image waits for a fuller batch, ms (IDPO_IMPROVER_MAX_DELAY_MS, default 10). */
  maxDelayMs: number;
  /** Most images waiting; beyond it calls fail RESOURCE_EXHAUSTED (IDPO_IMPROVER_MAX_QUEUE, default 1024). */
  maxQueue: number;
  /** Most images per request (the contract's 1024). */
  maxImages: number;
  /** Checkpoint loaded at start (IDPO_IMPROVER_CHECKPOINT); none when undefined. */
  checkpointId?: string;
}

/** Contract limits of ImproveImages (improver_service.proto). */
const LIMITS = {
  maxImages: 1024,
  maxPromptChars: 512,
  maxSteps: 1000,
  maxScale: 30,
  defaultSteps: 20,
  defaultTextScale: 3.5,
  defaultImageScale: 3.0,
} as const;

/** Reads the improver's settings from the environment (errors name the variable). */
export function improverConfigFromEnv(env: Record<string, string | undefined>): ImproverConfig {
  return {
    maxBatch: envInt(env, "IDPO_IMPROVER_MAX_BATCH", 32, 1, 4096),
    maxDelayMs: envInt(env, "IDPO_IMPROVER_MAX_DELAY_MS", 10, 0, 60_000),
    maxQueue: envInt(env, "IDPO_IMPROVER_MAX_QUEUE", 1024, 1, 1_000_000),
    maxImages: LIMITS.maxImages,
    checkpointId: envString(env, "IDPO_IMPROVER_CHECKPOINT"),
  };
}

/** What the improver is built from (the model host's part: ModelServiceDeps); the service definition wires the real ones. */
export interface ImproverDeps extends ModelServiceDeps {
  config: ImproverConfig;
}

/** One image of a request, as queued for batching. */
interface Item {
  pixels: Float32Array;
  prompt: string;
  seed: number;
}

/** Settings every image of a batch shares (the batching key's content). */
interface Group {
  lease: ModelLease<ServedModel>;
  steps: number;
  sampler: SamplerKind;
  sT: number;
  sI: number;
  strength: number;
}

/** A running improver: routes plus the handles tests and the service definition use. */
export interface Improver {
  /** Connect routes of idpo.improver.v1.ImproverService. */
  routes(router: ConnectRouter): void;
  /** Loads checkpoint `id` and makes it current; resolves to its reference. */
  loadCheckpoint(id: string): Promise<CheckpointRef>;
  /** The loaded checkpoint, if any. */
  current(): CheckpointRef | undefined;
  /** Settles when the start-up checkpoint (if any) has loaded or failed to. */
  ready: Promise<void>;
  /** Batching counters. */
  stats(): BatcherStats;
  /** Stops the subscription, fails queued calls, waits for the running batch, frees the weights. */
  close(): Promise<void>;
}

function invalid(msg: string): ConnectError {
  return new ConnectError(msg, Code.InvalidArgument);
}

function scale(v: number | undefined, fallback: number, field: string): number {
  if (v === undefined) return fallback;
  if (!Number.isFinite(v) || v < 0 || v > LIMITS.maxScale) {
    throw invalid(`${field}: ${v} is outside [0, ${LIMITS.maxScale}]`);
  }
  return v;
}

function samplerKind(s: Sampler, field: string): SamplerKind {
  if (s === Sampler.UNSPECIFIED || s === Sampler.DDIM) return "ddim";
  if (s === Sampler.DDPM) return "ddpm";
  throw invalid(`${field}: unknown sampler ${s}`);
}

function outputFormat(f: ImageFormat, field: string): ImageFormat {
  if (f === ImageFormat.UNSPECIFIED || f === ImageFormat.PNG) return ImageFormat.PNG;
  if (f === ImageFormat.TENSOR) return ImageFormat.TENSOR;
  throw invalid(`${field}: unknown image format ${f}`);
}

/** Validated settings of one ImproveImages call. */
interface Parsed {
  prompts: string[];
  seeds: number[];
  steps: number;
  sampler: SamplerKind;
  sT: number;
  sI: number;
  strength: number;
  format: ImageFormat;
}

function parseRequest(req: ImproveImagesRequest, maxImages: number): Parsed {
  const n = req.images.length;
  if (n === 0) throw invalid("images: at least one image is required");
  if (n > maxImages) throw invalid(`images: ${n} images is more than the limit of ${maxImages}`);
  if (req.prompts.length !== 1 && req.prompts.length !== n) {
    throw invalid(
      `prompts: got ${req.prompts.length} prompts for ${n} images (give one for all, or one per image)`,
    );
  }
  for (let i = 0; i < req.prompts.length; i++) {
    if (req.prompts[i].length > LIMITS.maxPromptChars) {
      throw invalid(
        `prompts[${i}]: ${req.prompts[i].length} characters is more than ${LIMITS.maxPromptChars}`,
      );
    }
  }
  const sT = scale(req.textGuidanceScale, LIMITS.defaultTextScale, "text_guidance_scale");
  const sI = scale(req.imageGuidanceScale, LIMITS.defaultImageScale, "image_guidance_scale");
  if (req.steps > LIMITS.maxSteps) throw invalid(`steps: ${req.steps} is more than ${LIMITS.maxSteps}`);
  const steps = req.steps === 0 ? LIMITS.defaultSteps : req.steps;
  const strength = req.strength ?? 1;
  if (!(strength > 0 && strength <= 1)) throw invalid(`strength: ${req.strength} is outside (0, 1]`);
  const last = req.seed + BigInt(n - 1);
  if (last > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw invalid(`seed: ${req.seed} + ${n - 1} exceeds the largest seed ${Number.MAX_SAFE_INTEGER}`);
  }
  const base = Number(req.seed);
  const prompts: string[] = [];
  const seeds: number[] = [];
  for (let i = 0; i < n; i++) {
    prompts.push(req.prompts.length === 1 ? req.prompts[0] : req.prompts[i]);
    seeds.push(base + i);
  }
  return {
    prompts,
    seeds,
    steps,
    sampler: samplerKind(req.sampler, "sampler"),
    sT,
    sI,
    strength,
    format: outputFormat(req.outputFormat, "output_format"),
  };
}

function noWeights(): ConnectError {
  return new ConnectError(
    "no improver weights loaded: set IDPO_IMPROVER_CHECKPOINT or call LoadCheckpoint",
    Code.FailedPrecondition,
  );
}

/**
 * Creates the improver: it loads `config.checkpointId` in the background (health NOT_SERVING until a
 * model is loaded), follows final IMPROVER checkpoint.published events when given a bus, and serves
 * ImproveImages through a dynamic batcher.
 */
export async function createImprover(deps: ImproverDeps): Promise<Improver> {
  const { config } = deps;
  const host = await createServiceModelHost("improver", "improver", deps);
  const batcher = new DynamicBatcher<Group, Item, Float32Array>(
    { maxBatch: config.maxBatch, maxDelayMs: config.maxDelayMs, maxQueue: config.maxQueue },
    improveBatch,
    (queued, limit) =>
      `improver queue is full: ${queued} images waiting, limit ${limit} (IDPO_IMPROVER_MAX_QUEUE); retry later`,
  );
  return {
    routes: improverRoutes(config, host, batcher),
    loadCheckpoint: host.loadCheckpoint,
    current: () => host.slot.current,
    ready: host.ready,
    stats: () => ({ ...batcher.stats }),
    async close() {
      batcher.close();
      await batcher.idle();
      await host.close();
    },
  };
}

/** Improves one batch of queued images with the same weights and settings. */
async function improveBatch(group: Group, items: Item[]): Promise<Float32Array[]> {
  const S = group.lease.model.imageSize;
  const per = S * S * 3;
  const data = new Float32Array(items.length * per);
  for (let i = 0; i < items.length; i++) data.set(items[i].pixels, i * per);
  const out = await group.lease.model.improve({
    images: { n: items.length, height: S, width: S, channels: 3, data },
    prompts: items.map((it) => it.prompt),
    seeds: items.map((it) => it.seed),
    steps: group.steps,
    sampler: group.sampler,
    sT: group.sT,
    sI: group.sI,
    strength: group.strength,
    batchSize: items.length,
  });
  const res: Float32Array[] = [];
  for (let i = 0; i < items.length; i++) res.push(out.data.slice(i * per, (i + 1) * per));
  return res;
}

function improverRoutes(
  config: ImproverConfig,
  host: ModelHost,
  batcher: DynamicBatcher<Group, Item, Float32Array>,
): (router: ConnectRouter) => void {
  return (router: ConnectRouter) =>
    router.service(ImproverService, {
      async improveImages(req: ImproveImagesRequest, ctx: HandlerContext) {
        const lease = host.slot.acquire();
        if (!lease) throw noWeights();
        try {
          return await improveImages(req, lease, config.maxImages, batcher, ctx.signal);
        } finally {
          lease.release();
        }
      },

      getModel() {
        return create(improverV1.GetModelResponseSchema, host.describe());
      },

      async loadCheckpoint(req: improverV1.LoadCheckpointRequest) {
        const ref = await host.loadCheckpoint(req.checkpointId);
        return create(improverV1.LoadCheckpointResponseSchema, { checkpoint: ref });
      },
    });
}

/** One ImproveImages call on a leased model: its images queued for batching with calls of the same settings. */
async function improveImages(
  req: ImproveImagesRequest,
  lease: ModelLease<ServedModel>,
  maxImages: number,
  batcher: DynamicBatcher<Group, Item, Float32Array>,
  signal: AbortSignal,
) {
  const p = parseRequest(req, maxImages);
  const S = lease.model.imageSize;
  const batch = imagesFromMessages(req.images, { field: "images", size: S });
  const per = S * S * 3;
  const items: Item[] = [];
  for (let i = 0; i < batch.n; i++) {
    items.push({
      pixels: batch.data.subarray(i * per, (i + 1) * per),
      prompt: p.prompts[i],
      seed: p.seeds[i],
    });
  }
  const key = `${lease.generation}|${p.steps}|${p.sampler}|${p.sT}|${p.sI}|${p.strength}`;
  const group: Group = {
    lease,
    steps: p.steps,
    sampler: p.sampler,
    sT: p.sT,
    sI: p.sI,
    strength: p.strength,
  };
  const outs = await batcher.submit(key, group, items, signal);
  const data = new Float32Array(outs.length * per);
  for (let i = 0; i < outs.length; i++) data.set(outs[i], i * per);
  return create(ImproveImagesResponseSchema, {
    images: imagesToMessages({ n: outs.length, height: S, width: S, channels: 3, data }, p.format),
    checkpoint: lease.ref,
  });
}

/** Dependencies a test (or an embedding program) can supply instead of the process-wide ones. */
export interface ImproverOverrides {
  /** Bus for checkpoint events and artifacts; default the process-wide `sharedBus()`. */
  bus?: Bus;
  /** Checkpoint store; default one over `bus.artifacts`. */
  checkpoints?: CheckpointStore;
  /** Transport to the inference sidecar (IDPO_INFERENCE=sidecar); default one to IDPO_INFERENCE_ADDR. */
  inferenceTransport?: Transport;
}

/** The Improver's service definition, optionally over given dependencies. */
export function improverDefinition(overrides: ImproverOverrides = {}): ServiceDefinition {
  return {
    name: "improver",
    defaultPort: 50052,
    grpcServices: [ImproverService.typeName],
    async create(ctx) {
      const config = improverConfigFromEnv(ctx.env);
      const bus = overrides.bus ?? (await sharedBus());
      const engine = await samplingEngineFromEnv(ctx.env, {
        checkpoints: overrides.checkpoints ?? new CheckpointStore(bus.artifacts),
        inferenceTransport: overrides.inferenceTransport,
        logger: ctx.logger,
      });
      const improver = await createImprover({
        config,
        engine: engine.engine,
        bus,
        consumerName: replicaConsumerName("improver"),
        logger: ctx.logger,
        setServing: ctx.setServing,
      });
      return {
        routes: improver.routes,
        close: async () => {
          await improver.close();
          engine.close();
        },
      };
    },
  };
}

/** The Improver (idpo.improver.v1.ImproverService, port 50052) over the process-wide bus. */
export const improverService: ServiceDefinition = improverDefinition();
