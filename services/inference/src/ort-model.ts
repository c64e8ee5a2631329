import {
  assertTimesteps,
  type DiffusionConfig,
  keyBiasValues,
  type ModelKind,
  makeNoiseSchedule,
  type NoiseSchedule,
  poolingWeights,
  Tokenizer,
  timestepEmbeddingValues,
  validateConfig,
} from "@idpo/diffusion";
import * as ort from "onnxruntime-node";
import type { Weights } from "./graph-layers.js";
import type { EncodedGraph } from "./onnx-graph.js";
import { buildTextEncoderGraph } from "./text-encoder-graph.js";
import { buildUNetGraph } from "./unet-graph.js";

/** How ONNX Runtime runs the graphs. */
export interface OrtOptions {
  /** Threads of each session's intra-op pool (the sessions run one at a time per call). */
  threads: number;
  /** Execution provider: "cpu", or "cuda" on GPU nodes (onnxruntime-node's CUDA build). */
  provider: "cpu" | "cuda";
}

/** A model's two graphs, serialized: what the graph cache keys by the weights' content hash. */
export interface ModelGraphs {
  config: DiffusionConfig;
  text: EncodedGraph;
  unet: EncodedGraph;
}

/** Builds both graphs from an architecture and its weights (validated against the config first). */
export function buildModelGraphs(config: DiffusionConfig, weights: Weights): ModelGraphs {
  validateConfig(config);
  return {
    config: structuredClone(config),
    text: buildTextEncoderGraph(config.text, weights),
    unet: buildUNetGraph(config.unet, weights, config.text.maxLength),
  };
}

/** Encoded prompts on the host, as the UNet graph consumes them. */
export interface OrtTextEmbedding {
  /** Number of prompts. */
  n: number;
  /** Token positions per prompt. */
  length: number;
  /** `[n, length, dim]`. */
  tokens: Float32Array;
  /** Additive key mask `[n, 1, 1, length]`. */
  bias: Float32Array;
  /** Pooling weights `[n, length]`. */
  pool: Float32Array;
}

/**
 * A diffusion model served by ONNX Runtime: the same interface as DiffusionModel's encodeText and
 * predictEps, on host arrays (NHWC, row-major).
 */
export class OrtDiffusionModel {
  readonly tokenizer: Tokenizer;
  readonly schedule: NoiseSchedule;

  private constructor(
    readonly graphs: ModelGraphs,
    private readonly textSession: ort.InferenceSession,
    private readonly unetSession: ort.InferenceSession,
    readonly options: OrtOptions,
  ) {
    this.tokenizer = new Tokenizer(graphs.config.text.vocab, graphs.config.text.maxLength);
    this.schedule = makeNoiseSchedule(graphs.config.schedule);
  }

  /** Opens sessions on already built graphs. */
  static async open(graphs: ModelGraphs, options: OrtOptions): Promise<OrtDiffusionModel> {
    const session: ort.InferenceSession.SessionOptions = {
      intraOpNumThreads: options.threads,
      interOpNumThreads: 1,
      executionProviders: [options.provider],
      graphOptimizationLevel: "all",
    };
    const text = await ort.InferenceSession.create(graphs.text.bytes, session);
    try {
      const unet = await ort.InferenceSession.create(graphs.unet.bytes, session);
      return new OrtDiffusionModel(graphs, text, unet, options);
    } catch (e) {
      await text.release();
      throw e;
    }
  }

  /** Builds the graphs from weights and opens them. */
  static async fromWeights(
    config: DiffusionConfig,
    weights: Weights,
    options: OrtOptions,
  ): Promise<OrtDiffusionModel> {
    return OrtDiffusionModel.open(buildModelGraphs(config, weights), options);
  }

  get config(): DiffusionConfig {
    return this.graphs.config;
  }

  /** "improver" when the UNet takes a condition image. */
  get kind(): ModelKind {
    return this.config.unet.condChannels > 0 ? "improver" : "policy";
  }

  /** Side of the images the UNet works on. */
  get imageSize(): number {
    return this.config.unet.imageSize;
  }

  /** Elements of one image in model space (S·S·C). */
  get imageElements(): number {
    const u = this.config.unet;
    return u.imageSize * u.imageSize * u.inChannels;
  }

  /** Tokenises and encodes prompts ("" = the null condition). */
  async encodeText(prompts: readonly string[]): Promise<OrtTextEmbedding> {
    const batch = this.tokenizer.encode(prompts);
    const { n, length } = batch;
    const bias = keyBiasValues(batch.mask, n, length);
    const ids = BigInt64Array.from(batch.ids, (v) => BigInt(v));
    const out = await this.textSession.run({
      ids: new ort.Tensor("int64", ids, [n, length]),
      bias: new ort.Tensor("float32", bias, [n, 1, 1, length]),
    });
    return {
      n,
      length,
      tokens: out.tokens.data as Float32Array,
      bias,
      pool: poolingWeights(batch.mask, n, length),
    };
  }

  /**
   * ε_θ(x_t, t, text[, cond]) for `n = text.n` images: `xt` and `cond` are `[n, S, S, C]` row-major,
   * `t` one integer timestep per image.
   */
  async predictEps(
    xt: Float32Array,
    t: ArrayLike<number>,
    text: OrtTextEmbedding,
    cond?: Float32Array,
  ): Promise<Float32Array> {
    const u = this.config.unet;
    const n = text.n;
    const S = u.imageSize;
    if (xt.length !== n * this.imageElements)
      throw new Error(`predictEps: xt has ${xt.length} values, expected ${n}×${S}×${S}×${u.inChannels}`);
    if (t.length !== n) throw new Error(`predictEps: ${t.length} timesteps for a batch of ${n}`);
    assertTimesteps(t, this.schedule.timesteps);
    const feeds: Record<string, ort.Tensor> = {
      x: new ort.Tensor("float32", xt, [n, S, S, u.inChannels]),
      temb: new ort.Tensor("float32", timestepEmbeddingValues(t, u.baseChannels), [n, u.baseChannels]),
      tokens: new ort.Tensor("float32", text.tokens, [n, text.length, u.textDim]),
      bias: new ort.Tensor("float32", text.bias, [n, 1, 1, text.length]),
      pool: new ort.Tensor("float32", text.pool, [n, text.length]),
    };
    if (this.kind === "improver") {
      if (!cond || cond.length !== n * S * S * u.condChannels)
        throw new Error(
          `predictEps: the improver needs a condition image batch [${n}, ${S}, ${S}, ${u.condChannels}]`,
        );
      feeds.cond = new ort.Tensor("float32", cond, [n, S, S, u.condChannels]);
    } else if (cond) {
      throw new Error("predictEps: a policy model takes no condition image");
    }
    const out = await this.unetSession.run(feeds);
    return out.eps.data as Float32Array;
  }

  /** Releases both sessions. */
  async release(): Promise<void> {
    await Promise.all([this.textSession.release(), this.unetSession.release()]);
  }
}
