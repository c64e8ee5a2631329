import * as tf from "@tensorflow/tfjs-core";
import "./gradients.js";
import { codecByName, type LatentCodec } from "./latent-codec.js";
import {
  assertTimesteps,
  makeNoiseSchedule,
  type NoiseSchedule,
  type NoiseScheduleConfig,
} from "./noise-schedule.js";
import { countParams, disposeParams, ParamBuilder, type Params } from "./params.js";
import { Rng } from "./rng.js";
import {
  buildTextEncoderParams,
  disposeTextEmbedding,
  encodeTokens,
  type TextEmbedding,
  type TextEncoderConfig,
  validateTextEncoderConfig,
} from "./text-encoder.js";
import { Tokenizer } from "./tokenizer.js";
import { buildUNetParams, type UNetConfig, unetForward, validateUNetConfig } from "./unet.js";

/** Everything needed to rebuild a model's architecture; stored in every checkpoint. */
export interface DiffusionConfig {
  /** Text encoder architecture and vocabulary. */
  text: TextEncoderConfig;
  /** UNet architecture (condChannels > 0 makes it an improver). */
  unet: UNetConfig;
  /** Forward-process schedule the model was trained with. */
  schedule: NoiseScheduleConfig;
  /** Latent codec name ("identity" = pixel space). */
  codec: string;
}

/** "policy": text-to-image; "improver": also conditioned on an image (docs/architecture.md). */
export type ModelKind = "policy" | "improver";

/** Throws with the offending field unless the config is usable. */
export function validateConfig(cfg: DiffusionConfig): void {
  if (!cfg || typeof cfg !== "object") throw new Error("model config must be an object");
  validateTextEncoderConfig(cfg.text);
  validateUNetConfig(cfg.unet);
  makeNoiseSchedule(cfg.schedule);
  const codec = codecByName(cfg.codec);
  if (cfg.unet.textDim !== cfg.text.dim) {
    throw new Error(`model config: unet.textDim ${cfg.unet.textDim} differs from text.dim ${cfg.text.dim}`);
  }
  if (cfg.unet.inChannels !== codec.channels || cfg.unet.outChannels !== codec.channels) {
    throw new Error(`model config: unet in/out channels must equal the codec's ${codec.channels}`);
  }
  if (cfg.unet.condChannels !== 0 && cfg.unet.condChannels !== codec.channels) {
    throw new Error(`model config: unet.condChannels must be 0 (policy) or ${codec.channels} (improver)`);
  }
}

/**
 * A text-conditioned diffusion model: text encoder + UNet + schedule. Its weights are one flat,
 * ordered name → variable map (text.* then unet.*), which checkpoints and optimisers use as is.
 */
export class DiffusionModel {
  readonly config: DiffusionConfig;
  readonly params: Params;
  readonly tokenizer: Tokenizer;
  readonly schedule: NoiseSchedule;
  readonly codec: LatentCodec;

  /** Use createModel / improverFromPolicy / decodeCheckpoint rather than this constructor. */
  constructor(config: DiffusionConfig, params: Params) {
    validateConfig(config);
    this.config = structuredClone(config);
    this.params = params;
    this.tokenizer = new Tokenizer(config.text.vocab, config.text.maxLength);
    this.schedule = makeNoiseSchedule(config.schedule);
    this.codec = codecByName(config.codec);
  }

  /** "improver" when the UNet takes a condition image. */
  get kind(): ModelKind {
    return this.config.unet.condChannels > 0 ? "improver" : "policy";
  }

  /** Side of the images the UNet works on. */
  get imageSize(): number {
    return this.config.unet.imageSize;
  }

  /** Number of scalar weights. */
  numParams(): number {
    return countParams(this.params);
  }

  /** Tokenises and encodes prompts ("" = null condition). The caller disposes the result. */
  encodeText(prompts: readonly string[]): TextEmbedding {
    if (!Array.isArray(prompts)) throw new Error("encodeText: prompts must be an array of strings");
    return encodeTokens(this.params, this.config.text, this.tokenizer.encode(prompts));
  }

  /**
   * ε_θ(x_t, t, c[, condition image]). `xt` is `[n, S, S, C]` in model space, `t` n integer timesteps
   * (or one for all), `text` n prompts or their encoding, `condImage` `[n, S, S, C]` (improver only;
   * all zeros is the null image condition). Returns `[n, S, S, C]`; the caller owns it.
   */
  predictEps(
    xt: tf.Tensor4D,
    t: number | ArrayLike<number>,
    text: TextEmbedding | readonly string[],
    condImage?: tf.Tensor4D,
  ): tf.Tensor4D {
    const u = this.config.unet;
    const S = u.imageSize;
    if (xt.rank !== 4 || xt.shape[1] !== S || xt.shape[2] !== S || xt.shape[3] !== u.inChannels) {
      throw new Error(`predictEps: xt has shape [${xt.shape}], expected [n, ${S}, ${S}, ${u.inChannels}]`);
    }
    const n = xt.shape[0];
    const ts = typeof t === "number" ? new Array<number>(n).fill(t) : t;
    if (ts.length !== n) throw new Error(`predictEps: ${ts.length} timesteps for a batch of ${n}`);
    assertTimesteps(ts, this.schedule.timesteps);
    if (this.kind === "improver") {
      if (!condImage)
        throw new Error("predictEps: the improver needs a condition image (zeros for the null image)");
      const c = condImage.shape;
      if (condImage.rank !== 4 || c[0] !== n || c[1] !== S || c[2] !== S || c[3] !== u.condChannels) {
        throw new Error(
          `predictEps: condImage has shape [${c}], expected [${n}, ${S}, ${S}, ${u.condChannels}]`,
        );
      }
    } else if (condImage) {
      throw new Error("predictEps: a policy model takes no condition image");
    }
    const owned = isPromptList(text);
    const emb = owned ? this.encodeText(text) : text;
    try {
      if (emb.n !== n) throw new Error(`predictEps: ${emb.n} prompts for a batch of ${n}`);
      return unetForward(this.params, u, xt, ts, emb, condImage);
    } finally {
      if (owned) disposeTextEmbedding(emb);
    }
  }

  /** Releases the weights. */
  dispose(): void {
    disposeParams(this.params);
  }
}

function isPromptList(x: TextEmbedding | readonly string[]): x is readonly string[] {
  return Array.isArray(x);
}

/** Options of createModel. */
export interface CreateModelOptions {
  /** Whether the variables are trainable (false for frozen reference copies). Default true. */
  trainable?: boolean;
}

/** A freshly initialised model; the seed fixes every weight on every backend. */
export function createModel(
  config: DiffusionConfig,
  seed: number,
  opts: CreateModelOptions = {},
): DiffusionModel {
  validateConfig(config);
  const b = new ParamBuilder(new Rng(seed), opts.trainable ?? true);
  try {
    buildTextEncoderParams(b, config.text);
    buildUNetParams(b, config.unet);
  } catch (e) {
    disposeParams(b.params);
    throw e;
  }
  return new DiffusionModel(config, b.params);
}

/** Names and shapes of every weight a config implies, in order (without allocating tensors). */
export function paramShapes(config: DiffusionConfig): Map<string, number[]> {
  validateConfig(config);
  const b = new ParamBuilder(null);
  buildTextEncoderParams(b, config.text);
  buildUNetParams(b, config.unet);
  return b.shapes;
}

/** Copies every weight of `from` into `to` (same names and shapes required). */
export function copyWeights(from: DiffusionModel, to: DiffusionModel): void {
  for (const [name, v] of to.params) {
    const src = from.params.get(name);
    if (!src) throw new Error(`copyWeights: source has no parameter ${name}`);
    if (src.shape.join(",") !== v.shape.join(",")) {
      throw new Error(
        `copyWeights: ${name} has shape [${src.shape}] in the source, [${v.shape}] in the target`,
      );
    }
    v.assign(src);
  }
  if (from.params.size !== to.params.size) {
    throw new Error(`copyWeights: source has ${from.params.size} parameters, target ${to.params.size}`);
  }
}

/** An independent copy of a model (e.g. a frozen reference: trainable false). */
export function cloneModel(model: DiffusionModel, opts: CreateModelOptions = {}): DiffusionModel {
  const params: Params = new Map();
  for (const [k, v] of model.params) params.set(k, tf.variable(v, opts.trainable ?? true));
  return new DiffusionModel(model.config, params);
}

/**
 * The improvement model initialised from a text-to-image policy (InstructPix2Pix): every policy
 * weight is copied; the first conv gains condChannels input channels whose kernels are zero, so the
 * improver's ε equals the policy's for any condition image until it is trained.
 */
export function improverFromPolicy(policy: DiffusionModel, opts: CreateModelOptions = {}): DiffusionModel {
  if (policy.kind !== "policy")
    throw new Error("improverFromPolicy: the source model is already an improver");
  const config: DiffusionConfig = structuredClone(policy.config);
  config.unet.condChannels = config.unet.inChannels;
  const params: Params = new Map();
  for (const [k, v] of policy.params) {
    if (k === "unet.conv_in.w") {
      const [kh, kw, cin, cout] = v.shape;
      const w = tf.tidy(() => tf.concat([v, tf.zeros([kh, kw, config.unet.condChannels, cout])], 2));
      params.set(k, tf.variable(w, opts.trainable ?? true));
      w.dispose();
      if (cin !== config.unet.inChannels)
        throw new Error(`improverFromPolicy: conv_in has ${cin} input channels`);
    } else {
      params.set(k, tf.variable(v, opts.trainable ?? true));
    }
  }
  return new DiffusionModel(config, params);
}
