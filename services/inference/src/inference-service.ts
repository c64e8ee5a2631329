import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import type { Bus, Subscription } from "@idpo/bus";
import {
  CheckpointStore,
  DynamicBatcher,
  imagesToMessages,
  replicaConsumerName,
  sharedBus,
  subscribeCheckpointPublished,
} from "@idpo/mesh";
import {
  type CheckpointRef,
  DescribeModelResponseSchema,
  InferenceService,
  type LoadModelRequest,
  LoadModelResponseSchema,
  ModelKind,
  type PredictEpsRequest,
  PredictEpsResponseSchema,
  type SampleImagesRequest,
  SampleImagesResponseSchema,
  TensorSchema,
} from "@idpo/proto";
import { envEnum, envInt, envString, type Logger, type ServiceDefinition } from "@idpo/runtime";
import * as ort from "onnxruntime-node";
import { type ParsedSample, parsePredict, parseSample, tensorMessage } from "./inference-requests.js";
import { type CacheStats, ModelCache, type ServedLease } from "./model-cache.js";
import type { OrtOptions } from "./ort-model.js";
import { ortImprove, ortSample } from "./ort-sampler.js";

/** Which published checkpoints the sidecar follows on its own. */
export type FollowKind = "none" | "policy" | "improver";

/** Inference server settings (from the environment by {@link inferenceConfigFromEnv}). */
export interface InferenceConfig {
  /** ONNX Runtime intra-op threads per session (IDPO_INFERENCE_THREADS, default 2). */
  threads: number;
  /** Execution provider (IDPO_INFERENCE_PROVIDER: cpu, or cuda on GPU nodes; default cpu). */
  provider: OrtOptions["provider"];
  /** Models kept open, current one included (IDPO_INFERENCE_CACHE_MODELS, default 4). */
  cacheModels: number;
  /** Most images sampled together (IDPO_INFERENCE_MAX_BATCH, default 64). */
  maxBatch: number;
  /** Longest a queued image waits for a fuller batch, ms (IDPO_INFERENCE_MAX_DELAY_MS, default 5). */
  maxDelayMs: number;
  /** Most images waiting; beyond it calls fail RESOURCE_EXHAUSTED (IDPO_INFERENCE_MAX_QUEUE, default 4096). */
  maxQueue: number;
  /** Checkpoint loaded at start (IDPO_INFERENCE_CHECKPOINT); none when undefined. */
  checkpointId?: string;
  /** Final checkpoint.published events of this kind become current (IDPO_INFERENCE_FOLLOW, default none). */
  follow: FollowKind;
}

/** Reads the inference server's settings from the environment (errors name the variable). */
export function inferenceConfigFromEnv(env: Record<string, string | undefined>): InferenceConfig {
  return {
    threads: envInt(env, "IDPO_INFERENCE_THREADS", 2, 1, 256),
    provider: envEnum(env, "IDPO_INFERENCE_PROVIDER", "cpu", ["cpu", "cuda"] as const),
    cacheModels: envInt(env, "IDPO_INFERENCE_CACHE_MODELS", 4, 1, 64),
    maxBatch: envInt(env, "IDPO_INFERENCE_MAX_BATCH", 64, 1, 4096),
    maxDelayMs: envInt(env, "IDPO_INFERENCE_MAX_DELAY_MS", 5, 0, 60_000),
    maxQueue: envInt(env, "IDPO_INFERENCE_MAX_QUEUE", 4096, 1, 1_000_000),
    checkpointId: envString(env, "IDPO_INFERENCE_CHECKPOINT"),
    follow: envEnum(env, "IDPO_INFERENCE_FOLLOW", "none", ["none", "policy", "improver"] as const),
  };
}

/** What the inference server is built from; the service definition wires the real ones. */
export interface InferenceDeps {
  config: InferenceConfig;
  /** Where checkpoints are read from. */
  checkpoints: CheckpointStore;
  /** Event log for IDPO_INFERENCE_FOLLOW; without it the server loads only on LoadModel and per call. */
  bus?: Pick<Bus, "events">;
  /** Durable consumer name of the checkpoint subscription (unique per replica). */
  consumerName?: string;
  logger: Logger;
  /** Health: SERVING once a checkpoint is current. */
  setServing(serving: boolean): void;
}

/** A running inference server. */
export interface InferenceServer {
  /** Connect routes of idpo.inference.v1.InferenceService. */
  routes(router: ConnectRouter): void;
  /** Makes checkpoint `id` current; resolves to its reference. */
  loadModel(id: string): Promise<CheckpointRef>;
  /** The current checkpoint, if any. */
  current(): CheckpointRef | undefined;
  /** Settles when the start-up checkpoint (if any) has loaded or failed to. */
  ready: Promise<void>;
  /** Graph cache counters. */
  cacheStats(): CacheStats;
  /** Stops the subscription, fails queued calls, waits for running ones, releases the sessions. */
  close(): Promise<void>;
}

interface Item {
  prompt: string;
  seed: number;
  pixels?: Float32Array;
}

interface Group {
  lease: ServedLease;
  parsed: ParsedSample;
}

/** One image of a PredictEps call, as queued for batching. */
interface EpsItem {
  x: Float32Array;
  t: number;
  prompt: string;
  cond?: Float32Array;
}

function noModel(): ConnectError {
  return new ConnectError(
    "no model loaded: set IDPO_INFERENCE_CHECKPOINT, call LoadModel, or name checkpoint_id",
    Code.FailedPrecondition,
  );
}

/** The engine, as DescribeModel reports it. */
function engineName(o: OrtOptions): string {
  return `onnxruntime-node ${ort.env.versions.node ?? "?"} (${o.provider}, ${o.threads} thread${o.threads === 1 ? "" : "s"})`;
}

/**
 * Creates the inference server: loads `config.checkpointId` in the background (health NOT_SERVING
 * until a checkpoint is current), follows published checkpoints of `config.follow`, and serves
 * PredictEps and SampleImages through dynamic batchers keyed by the weights (and SampleImages' settings).
 */
export async function createInferenceServer(deps: InferenceDeps): Promise<InferenceServer> {
  const { config, logger } = deps;
  const options: OrtOptions = { threads: config.threads, provider: config.provider };
  const cache = new ModelCache(deps.checkpoints, options, config.cacheModels);
  deps.setServing(false);
  const limits = { maxBatch: config.maxBatch, maxDelayMs: config.maxDelayMs, maxQueue: config.maxQueue };
  const batcher = new DynamicBatcher<Group, Item, Float32Array>(limits, sampleBatch, queueFull);
  // PredictEps calls on the same weights share forward passes (ε of an image does not depend on its batch).
  const epsBatcher = new DynamicBatcher<ServedLease, EpsItem, Float32Array>(
    limits,
    predictEpsBatch,
    queueFull,
  );
  const models = modelLoader(cache, deps);
  const subscription = await followCheckpoints(deps, models.loadModel);
  const ready = config.checkpointId
    ? models.loadModel(config.checkpointId).then(
        () => undefined,
        (err: unknown) =>
          logger.error("could not load the start-up checkpoint", {
            checkpoint: config.checkpointId,
            error: (err as Error).message,
          }),
      )
    : Promise.resolve();
  return {
    routes: inferenceRoutes({ cache, options, models, batcher, epsBatcher }),
    loadModel: async (id) => (await models.loadModel(id)).ref,
    current: () => cache.current,
    ready,
    cacheStats: () => ({ ...cache.stats }),
    async close() {
      await subscription?.stop({ timeoutMs: 5_000 });
      batcher.close();
      epsBatcher.close();
      await Promise.all([batcher.idle(), epsBatcher.idle()]);
      await ready;
      await cache.close();
    },
  };
}

function queueFull(queued: number, limit: number): string {
  return `inference queue is full: ${queued} images waiting, limit ${limit} (IDPO_INFERENCE_MAX_QUEUE); retry later`;
}

/** Samples (a policy) or improves (an improver) one batch of queued SampleImages items with the same settings. */
async function sampleBatch({ lease, parsed: p }: Group, items: Item[]): Promise<Float32Array[]> {
  const S = lease.model.imageSize;
  const per = S * S * 3;
  const common = {
    steps: p.steps,
    sampler: p.sampler,
    eta: p.eta,
    clipDenoised: p.clipDenoised,
    batchSize: items.length,
  };
  const prompts = items.map((it) => it.prompt);
  const seeds = items.map((it) => it.seed);
  let out: Float32Array;
  if (lease.model.kind === "policy") {
    out = (await ortSample(lease.model, { ...common, prompts, seeds, guidanceScale: p.guidanceScale })).data;
  } else {
    const data = new Float32Array(items.length * per);
    for (let i = 0; i < items.length; i++) data.set(items[i].pixels!, i * per);
    const images = { n: items.length, height: S, width: S, channels: 3 as const, data };
    out = (
      await ortImprove(lease.model, {
        ...common,
        images,
        prompts,
        seeds,
        sT: p.sT,
        sI: p.sI,
        strength: p.strength,
      })
    ).data;
  }
  return items.map((_, i) => out.slice(i * per, (i + 1) * per));
}

/** One UNet forward pass over a batch of queued PredictEps images on the same weights. */
async function predictEpsBatch(lease: ServedLease, items: EpsItem[]): Promise<Float32Array[]> {
  const u = lease.model.config.unet;
  const per = u.imageSize * u.imageSize * u.inChannels;
  const perCond = u.imageSize * u.imageSize * u.condChannels;
  const x = new Float32Array(items.length * per);
  const cond = perCond > 0 ? new Float32Array(items.length * perCond) : undefined;
  items.forEach((it, i) => {
    x.set(it.x, i * per);
    if (cond && it.cond) cond.set(it.cond, i * perCond);
  });
  const text = await lease.model.encodeText(items.map((it) => it.prompt));
  const eps = await lease.model.predictEps(
    x,
    items.map((it) => it.t),
    text,
    cond,
  );
  return items.map((_, i) => eps.slice(i * per, (i + 1) * per));
}

/** Loading checkpoints into the cache, and the model each call runs on. */
interface ModelLoader {
  /** Makes checkpoint `id` current (health SERVING from then on). */
  loadModel(id: string): Promise<{ ref: CheckpointRef; cached: boolean; configJson: string }>;
  /** The model a call runs on: the named checkpoint (loaded into the cache if needed) or the current one. */
  leaseFor(checkpointId: string): Promise<ServedLease>;
}

function modelLoader(cache: ModelCache, deps: InferenceDeps): ModelLoader {
  const installed = (ref: CheckpointRef, cached: boolean) => {
    deps.logger.info("inference model current", { checkpoint: ref.id, sha256: ref.sha256, cached });
    deps.setServing(true);
  };
  return {
    async loadModel(id) {
      const lease = await cache.lease(id, true);
      lease.release();
      installed(lease.ref, lease.cached);
      return { ref: lease.ref, cached: lease.cached, configJson: JSON.stringify(lease.model.config) };
    },
    async leaseFor(checkpointId) {
      if (checkpointId !== "") {
        const hadCurrent = cache.current !== undefined;
        const lease = await cache.lease(checkpointId);
        if (!hadCurrent) installed(lease.ref, lease.cached);
        return lease;
      }
      const lease = cache.leaseCurrent();
      if (!lease) throw noModel();
      return lease;
    },
  };
}

/** With a bus and IDPO_INFERENCE_FOLLOW, makes each final published checkpoint of that kind current. */
async function followCheckpoints(
  deps: InferenceDeps,
  loadModel: ModelLoader["loadModel"],
): Promise<Subscription | undefined> {
  const { config, logger } = deps;
  if (!deps.bus || config.follow === "none") return undefined;
  const want = config.follow === "policy" ? ModelKind.POLICY : ModelKind.IMPROVER;
  return await subscribeCheckpointPublished(deps.bus, {
    consumer: deps.consumerName ?? replicaConsumerName("inference"),
    onCheckpoint: async (published) => {
      const ref = published.checkpoint!;
      if (ref.kind !== want || !published.isFinal) return;
      logger.info("checkpoint.published: loading", { checkpoint: ref.id, job: published.jobId });
      await loadModel(ref.id);
    },
  });
}

/** What the InferenceService handlers work with. */
interface RoutesContext {
  cache: ModelCache;
  options: OrtOptions;
  models: ModelLoader;
  batcher: DynamicBatcher<Group, Item, Float32Array>;
  epsBatcher: DynamicBatcher<ServedLease, EpsItem, Float32Array>;
}

function inferenceRoutes(c: RoutesContext): (router: ConnectRouter) => void {
  const { cache } = c;
  return (router: ConnectRouter) =>
    router.service(InferenceService, {
      async loadModel(req: LoadModelRequest) {
        const { ref, cached, configJson } = await c.models.loadModel(req.checkpointId);
        return create(LoadModelResponseSchema, { checkpoint: ref, cached, configJson });
      },

      describeModel() {
        const lease = cache.leaseCurrent();
        try {
          return create(DescribeModelResponseSchema, {
            checkpoint: lease?.ref,
            configJson: lease ? JSON.stringify(lease.model.config) : "",
            engine: engineName(c.options),
            textGraphSha256: lease?.model.graphs.text.sha256 ?? "",
            unetGraphSha256: lease?.model.graphs.unet.sha256 ?? "",
            cached: cache.cachedRefs(),
          });
        } finally {
          lease?.release();
        }
      },

      async predictEps(req: PredictEpsRequest, ctx: HandlerContext) {
        const lease = await c.models.leaseFor(req.checkpointId);
        try {
          return await predictEps(req, lease, c.epsBatcher, ctx.signal);
        } finally {
          lease.release();
        }
      },

      async sampleImages(req: SampleImagesRequest, ctx: HandlerContext) {
        const lease = await c.models.leaseFor(req.checkpointId);
        try {
          return await sampleImages(req, lease, c.batcher, ctx.signal);
        } finally {
          lease.release();
        }
      },
    });
}

async function predictEps(
  req: PredictEpsRequest,
  lease: ServedLease,
  epsBatcher: RoutesContext["epsBatcher"],
  signal: AbortSignal,
) {
  const p = parsePredict(req, lease.model);
  const u = lease.model.config.unet;
  const per = u.imageSize * u.imageSize * u.inChannels;
  const perCond = u.imageSize * u.imageSize * u.condChannels;
  const items: EpsItem[] = p.prompts.map((prompt, i) => ({
    x: p.xt.subarray(i * per, (i + 1) * per),
    t: p.t[i],
    prompt,
    cond: p.cond?.subarray(i * perCond, (i + 1) * perCond),
  }));
  const outs = await epsBatcher.submit(lease.hash, lease, items, signal);
  const eps = new Float32Array(p.n * per);
  for (let i = 0; i < outs.length; i++) eps.set(outs[i], i * per);
  return create(PredictEpsResponseSchema, {
    eps: create(TensorSchema, tensorMessage(eps, [p.n, u.imageSize, u.imageSize, u.outChannels])),
    checkpoint: lease.ref,
  });
}

async function sampleImages(
  req: SampleImagesRequest,
  lease: ServedLease,
  batcher: RoutesContext["batcher"],
  signal: AbortSignal,
) {
  const p = parseSample(req, lease.model);
  const S = lease.model.imageSize;
  const per = S * S * 3;
  const items: Item[] = p.prompts.map((prompt, i) => ({
    prompt,
    seed: p.seeds[i],
    pixels: p.images?.data.subarray(i * per, (i + 1) * per),
  }));
  const outs = await batcher.submit(`${lease.hash}|${p.key}`, { lease, parsed: p }, items, signal);
  const data = new Float32Array(outs.length * per);
  for (let i = 0; i < outs.length; i++) data.set(outs[i], i * per);
  return create(SampleImagesResponseSchema, {
    images: imagesToMessages({ n: outs.length, height: S, width: S, channels: 3, data }, p.format),
    checkpoint: lease.ref,
  });
}

/** Dependencies a test (or an embedding program) can supply instead of the process-wide ones. */
export interface InferenceOverrides {
  /** Bus for checkpoint events and artifacts; default the process-wide `sharedBus()`. */
  bus?: Bus;
  /** Checkpoint store; default one over `bus.artifacts`. */
  checkpoints?: CheckpointStore;
}

/** The inference sidecar's service definition, optionally over given dependencies. */
export function inferenceDefinition(overrides: InferenceOverrides = {}): ServiceDefinition {
  return {
    name: "inference",
    defaultPort: 50056,
    grpcServices: [InferenceService.typeName],
    async create(ctx) {
      const config = inferenceConfigFromEnv(ctx.env);
      const bus = overrides.bus ?? (await sharedBus());
      const server = await createInferenceServer({
        config,
        checkpoints: overrides.checkpoints ?? new CheckpointStore(bus.artifacts),
        bus,
        consumerName: replicaConsumerName("inference"),
        logger: ctx.logger,
        setServing: ctx.setServing,
      });
      return { routes: server.routes, close: () => server.close() };
    },
  };
}

/** The inference sidecar (idpo.inference.v1.InferenceService, port 50056) over the process-wide bus. */
export const inferenceService: ServiceDefinition = inferenceDefinition();
