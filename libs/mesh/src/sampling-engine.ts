import { create } from "@bufbuild/protobuf";
import { type CallOptions, Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import {
  type DiffusionConfig,
  type DiffusionModel,
  type ImageBatch,
  type ImproveOptions,
  improve,
  initBackend,
  type ModelKind,
  SAMPLER_DEFAULTS,
  type SampleOptions,
  sample,
} from "@idpo/diffusion";
import {
  ImageFormat,
  InferenceService,
  type SampleImagesRequest,
  SampleImagesRequestSchema,
  Sampler,
} from "@idpo/proto";
import {
  createPeerTransport,
  envEnum,
  envInt,
  type Logger,
  peerAddress,
  retryTransient,
} from "@idpo/runtime";
import { loadDiffusionCheckpoint, wrongModelKind } from "./checkpoint-loader.js";
import type { CheckpointStore } from "./checkpoint-store.js";
import { imagesFromMessages, imagesToMessages } from "./images.js";
import type { LoadedModel } from "./model-slot.js";

/** Where a service's sampling runs: the inference sidecar over loopback, or tfjs in its own process. */
export type InferenceMode = "sidecar" | "in-process";

/** The accepted values of IDPO_INFERENCE. */
export const INFERENCE_MODES: readonly InferenceMode[] = ["sidecar", "in-process"];

/**
 * A model a service samples from, wherever its weights live. `sample` and `improve` take the options
 * of libs/diffusion's samplers and give the same images for the same prompts, seeds and settings.
 */
export interface ServedModel {
  /** The checkpoint's architecture. */
  readonly config: DiffusionConfig;
  /** "policy" or "improver". */
  readonly kind: ModelKind;
  /** Side of the images. */
  readonly imageSize: number;
  /** Text-to-image sampling (policy). */
  sample(opts: SampleOptions): Promise<ImageBatch>;
  /** Image improvement with double guidance (improver). */
  improve(opts: ImproveOptions): Promise<ImageBatch>;
  /** Releases what this process holds for it. */
  dispose(): void;
}

/** Loads checkpoints as ServedModels. */
export interface SamplingEngine {
  /** What GetModel reports as the backend, e.g. "wasm" or "sidecar http://127.0.0.1:50056". */
  readonly description: string;
  /** Loads checkpoint `id`, failing with INVALID_ARGUMENT unless it is a `kind` model. */
  load(id: string, kind: ModelKind): Promise<LoadedModel<ServedModel>>;
}

function kindOf(config: DiffusionConfig): ModelKind {
  return config.unet.condChannels > 0 ? "improver" : "policy";
}

/** tfjs in this process: the checkpoint's weights are loaded here and sampled with libs/diffusion. */
export function inProcessEngine(store: CheckpointStore, backend: string): SamplingEngine {
  return {
    description: backend,
    async load(id, kind) {
      const { model, ref } = await loadDiffusionCheckpoint(store, id, kind);
      return { model: inProcessModel(model), ref };
    },
  };
}

function inProcessModel(model: DiffusionModel): ServedModel {
  return {
    config: model.config,
    kind: model.kind,
    imageSize: model.imageSize,
    sample: (opts) => sample(model, opts),
    improve: (opts) => improve(model, opts),
    dispose: () => model.dispose(),
  };
}

/** Most images per SampleImages call (the contract's limit). */
const MAX_CALL_IMAGES = 1024;

function samplerEnum(kind: SampleOptions["sampler"]): Sampler {
  if (kind === undefined || kind === "ddim") return Sampler.DDIM;
  if (kind === "ddpm") return Sampler.DDPM;
  throw new Error(`sampler must be "ddim" or "ddpm", got ${kind}`);
}

function seedsOf(seeds: readonly number[]): bigint[] {
  return seeds.map((s, i) => {
    if (!Number.isSafeInteger(s) || s < 0)
      throw new Error(`seeds[${i}] must be a non-negative safe integer, got ${s}`);
    return BigInt(s);
  });
}

/** How the sidecar engine rides out a sidecar that is restarting. */
export interface SidecarRetry {
  /** Give up on a call once this long has passed since its first transient failure (ms). */
  budgetMs: number;
  /** Where the retries are reported. */
  logger?: Logger;
}

/**
 * The inference sidecar: the service keeps only the checkpoint's reference and config, and every
 * sampling call is a SampleImages call naming the checkpoint, so a call that started before a hot swap
 * finishes on the weights it started with, and a restarted sidecar (which has lost its cache) loads the
 * checkpoint again on the first call. Transient failures (UNAVAILABLE, a refused connection...) are
 * retried for `retry.budgetMs`. Calls of more than `batchSize` images (default 32) are split into
 * concurrent calls that the sidecar batches again; `onProgress` counts finished calls.
 */
export function sidecarEngine(
  store: CheckpointStore,
  transport: Transport,
  address: string,
  retry: SidecarRetry = { budgetMs: 0 },
): SamplingEngine {
  const client = createClient(InferenceService, transport);
  const withRetry = <T>(what: string, call: () => Promise<T>, signal?: AbortSignal): Promise<T> =>
    retryTransient(call, {
      budgetMs: retry.budgetMs,
      baseDelayMs: 250,
      maxDelayMs: 5_000,
      signal,
      onRetry: (err, attempt, delayMs) =>
        retry.logger?.warn("inference sidecar unreachable; retrying", {
          address,
          call: what,
          attempt: attempt + 1,
          retryInMs: delayMs,
          error: (err as Error).message,
        }),
    });
  return {
    description: `sidecar ${address}`,
    async load(id, kind) {
      const stored = await store.ref(id);
      const res = await withRetry("LoadModel", () => client.loadModel({ checkpointId: id }));
      let config: DiffusionConfig;
      try {
        config = JSON.parse(res.configJson) as DiffusionConfig;
      } catch {
        throw new ConnectError(`inference sidecar: LoadModel(${id}) returned no config`, Code.Internal);
      }
      const got = kindOf(config);
      if (got !== kind) throw wrongModelKind(id, got, kind);
      const ref = res.checkpoint ?? stored;
      if (!ref)
        throw new ConnectError(`inference sidecar: LoadModel(${id}) returned no checkpoint`, Code.Internal);
      return { model: sidecarModel(client, id, config, withRetry), ref };
    },
  };
}

type InferenceClient = ReturnType<typeof createClient<typeof InferenceService>>;
type WithRetry = <T>(what: string, call: () => Promise<T>, signal?: AbortSignal) => Promise<T>;

function sidecarModel(
  client: InferenceClient,
  id: string,
  config: DiffusionConfig,
  withRetry: WithRetry,
): ServedModel {
  const S = config.unet.imageSize;
  const kind = kindOf(config);
  const sidecar = { client, withRetry, imageSize: S };
  return {
    config,
    kind,
    imageSize: S,
    sample(opts) {
      if (kind !== "policy")
        throw new Error("sample: expects a text-to-image policy; use improve() for an improver");
      const seeds = seedsOf(opts.seeds);
      return sampleInChunks(
        sidecar,
        opts.prompts.length,
        opts.batchSize ?? SAMPLER_DEFAULTS.batchSize,
        (s, e) => policyRequest(id, opts, seeds, s, e),
        opts,
      );
    },
    improve(opts) {
      if (kind !== "improver")
        throw new Error("improve: expects an improvement model (a UNet with condition channels)");
      const seeds = seedsOf(opts.seeds);
      return sampleInChunks(
        sidecar,
        opts.images.n,
        opts.batchSize ?? SAMPLER_DEFAULTS.batchSize,
        (s, e) => improverRequest(id, S, opts, seeds, s, e),
        opts,
      );
    },
    dispose() {},
  };
}

/** Runs one SampleImages request per chunk of `chunk` images concurrently; reassembles the images in order. */
async function sampleInChunks(
  sidecar: { client: InferenceClient; withRetry: WithRetry; imageSize: number },
  n: number,
  chunk: number,
  build: (start: number, end: number) => SampleImagesRequest,
  opts: { signal?: AbortSignal; onProgress?: (done: number, total: number) => void },
): Promise<ImageBatch> {
  const { client, withRetry, imageSize: S } = sidecar;
  const data = new Float32Array(n * S * S * 3);
  if (n === 0) return { n: 0, height: S, width: S, channels: 3, data };
  const size = Math.max(1, Math.min(MAX_CALL_IMAGES, chunk));
  const calls = Math.ceil(n / size);
  const call: CallOptions = opts.signal ? { signal: opts.signal } : {};
  let done = 0;
  await Promise.all(
    Array.from({ length: calls }, async (_, c) => {
      const start = c * size;
      const end = Math.min(n, start + size);
      const req = build(start, end);
      const res = await withRetry("SampleImages", () => client.sampleImages(req, call), opts.signal);
      const images = imagesFromMessages(res.images, { field: "inference response images", size: S });
      if (images.n !== end - start)
        throw new ConnectError(
          `inference sidecar: ${images.n} images for ${end - start} asked`,
          Code.Internal,
        );
      data.set(images.data, start * S * S * 3);
      opts.onProgress?.(++done, calls);
    }),
  );
  return { n, height: S, width: S, channels: 3, data };
}

/** The SampleImages request of images [s, e) of a policy's sample() call. */
function policyRequest(id: string, opts: SampleOptions, seeds: bigint[], s: number, e: number) {
  return create(SampleImagesRequestSchema, {
    prompts: opts.prompts.slice(s, e),
    seeds: seeds.slice(s, e),
    steps: opts.steps ?? SAMPLER_DEFAULTS.steps,
    sampler: samplerEnum(opts.sampler),
    eta: opts.eta ?? 0,
    clipDenoised: opts.clipDenoised ?? true,
    guidance: {
      case: "classifierFree",
      value: { scale: opts.guidanceScale ?? SAMPLER_DEFAULTS.guidanceScale },
    },
    outputFormat: ImageFormat.TENSOR,
    checkpointId: id,
  });
}

/** The SampleImages request of images [s, e) of an improver's improve() call (S × S condition images). */
function improverRequest(id: string, S: number, opts: ImproveOptions, seeds: bigint[], s: number, e: number) {
  const per = S * S * 3;
  return create(SampleImagesRequestSchema, {
    prompts: opts.prompts.slice(s, e),
    seeds: seeds.slice(s, e),
    conditionImages: imagesToMessages(
      { n: e - s, height: S, width: S, channels: 3, data: opts.images.data.subarray(s * per, e * per) },
      ImageFormat.TENSOR,
    ),
    steps: opts.steps ?? SAMPLER_DEFAULTS.steps,
    sampler: samplerEnum(opts.sampler),
    eta: opts.eta ?? 0,
    clipDenoised: opts.clipDenoised ?? true,
    guidance: {
      case: "double",
      value: {
        textScale: opts.sT ?? SAMPLER_DEFAULTS.sT,
        imageScale: opts.sI ?? SAMPLER_DEFAULTS.sI,
      },
    },
    ...(opts.strength !== undefined ? { strength: opts.strength } : {}),
    outputFormat: ImageFormat.TENSOR,
    checkpointId: id,
  });
}

/** Options of {@link samplingEngineFromEnv}. */
export interface EngineFromEnvOptions {
  /** Where checkpoints are read from. */
  checkpoints: CheckpointStore;
  /** Transport to the sidecar; default `createPeerTransport(peerAddress("inference"))`. */
  inferenceTransport?: Transport;
  logger: Logger;
}

/**
 * The engine IDPO_INFERENCE chooses: "in-process" (default) initialises the tfjs backend here;
 * "sidecar" talks to the inference sidecar at IDPO_INFERENCE_ADDR (http://127.0.0.1:50056 by default),
 * retrying its transient failures for IDPO_INFERENCE_RETRY_S seconds (default 120). `close` releases
 * the transport it opened.
 */
export async function samplingEngineFromEnv(
  env: Record<string, string | undefined>,
  opts: EngineFromEnvOptions,
): Promise<{ engine: SamplingEngine; close(): void }> {
  const mode = envEnum(env, "IDPO_INFERENCE", "in-process", INFERENCE_MODES);
  if (mode === "sidecar") {
    const address = peerAddress("inference", env);
    const owned = opts.inferenceTransport ? undefined : createPeerTransport(address);
    const transport = opts.inferenceTransport ?? owned!;
    const budgetMs = envInt(env, "IDPO_INFERENCE_RETRY_S", 120, 0, 86_400) * 1000;
    return {
      engine: sidecarEngine(opts.checkpoints, transport, address, { budgetMs, logger: opts.logger }),
      close: () => owned?.close(),
    };
  }
  const backend = (await initBackend({ log: (msg, fields) => opts.logger.info(msg, { ...fields }) })).name;
  return { engine: inProcessEngine(opts.checkpoints, backend), close: () => {} };
}
